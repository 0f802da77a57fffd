// newsdesk chat page: plain JS, no build step. Article text is always inserted as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { messages: [], articles: new Map(), titles: new Map() };

function headers(json = true) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = `Bearer ${key}`;
  return h;
}

// An API key problem (a 401) opens Settings and stays on screen until a request succeeds;
// other errors fade after 8 s.
function showError(message, { keyProblem = false } = {}) {
  const box = $("error");
  box.textContent = keyProblem ? `${message} (enter the API key under Settings)` : message;
  box.hidden = false;
  box.dataset.keyProblem = String(keyProblem);
  clearTimeout(showError.timer);
  if (keyProblem) $("settings").open = true;
  else showError.timer = setTimeout(() => { box.hidden = true; }, 8000);
}

function clearKeyProblem() {
  const box = $("error");
  if (box.dataset.keyProblem === "true") box.hidden = true;
}

class RequestError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// Throws a RequestError with the server's message unless the response is a success.
async function checked(response) {
  if (!response.ok) throw new RequestError(await failure(response), response.status);
  clearKeyProblem();
  return response;
}

function reportError(error) {
  showError(error.message, { keyProblem: error.status === 401 });
}

async function failure(response) {
  try {
    const body = await response.json();
    return body.error?.message || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function getJSON(path) {
  const response = await checked(await fetch(path, { headers: headers(false) }));
  return response.json();
}

// Shown numbers run 1, 2, ... in order of first appearance, whatever numbers the server used
// (an LLM cites its sources by their place in its prompt). One numbering per answer or brief.
function numbering() {
  const shown = new Map();
  return (number) => {
    if (!shown.has(number)) shown.set(number, shown.size + 1);
    return shown.get(number);
  };
}

function citeButton(citation, shownNumber) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "cite";
  button.textContent = `[${shownNumber}]`;
  button.title = `${citation.title} (${citation.source || "unknown source"})`;
  button.dataset.number = String(citation.number);
  button.addEventListener("click", () => showCitation(citation));
  return button;
}

// Text with [n] (or [n, m]) markers -> text nodes and citation buttons.
function renderCited(element, text, citations, shownNumber = numbering()) {
  element.replaceChildren();
  const byNumber = new Map(citations.map((c) => [c.number, c]));
  let last = 0;
  for (const match of text.matchAll(/\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]/g)) {
    const cited = match[1].split(",").map((n) => byNumber.get(Number(n)));
    if (!cited.every(Boolean)) continue;
    element.append(document.createTextNode(text.slice(last, match.index)));
    for (const citation of cited) element.append(citeButton(citation, shownNumber(citation.number)));
    last = match.index + match[0].length;
  }
  element.append(document.createTextNode(text.slice(last)));
}

// Only http(s) URLs become links: a "javascript:" or other scheme in article data stays text.
function sourceLink(url) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return document.createTextNode(url);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return document.createTextNode(url);
  const link = document.createElement("a");
  link.href = parsed.href;
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  link.textContent = url;
  return link;
}

function showSourceMeta(citation) {
  const parts = [citation.source, citation.published_at.slice(0, 10)].filter(Boolean).map((t) => document.createTextNode(t));
  if (citation.url) parts.push(sourceLink(citation.url));
  const meta = $("source-meta");
  meta.replaceChildren();
  parts.forEach((part, i) => meta.append(...(i ? [" · ", part] : [part])));
}

// On a narrow screen the panel sits below the chat: bring it into view.
function revealSource() {
  const panel = $("source");
  const top = panel.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight * 0.8) panel.scrollIntoView({ behavior: "smooth", block: "start" });
}

async function showCitation(citation) {
  $("source").hidden = false;
  $("source-title").textContent = citation.title || citation.article_id;
  showSourceMeta(citation);
  $("quote").textContent = citation.quote;
  revealSource();
  const box = $("article-text");
  box.textContent = "Loading the article…";
  try {
    let article = state.articles.get(citation.article_id);
    if (!article) {
      article = await getJSON(`/v1/articles/${encodeURIComponent(citation.article_id)}`);
      state.articles.set(citation.article_id, article);
    }
    const mark = document.createElement("mark");
    mark.textContent = article.text.slice(citation.start, citation.end);
    box.replaceChildren(
      document.createTextNode(article.text.slice(0, citation.start)),
      mark,
      document.createTextNode(article.text.slice(citation.end)),
    );
    // Scroll the article box only: the page, the question and the quote stay in place.
    box.scrollTop = Math.max(0, mark.offsetTop - box.clientHeight / 3);
  } catch (error) {
    box.textContent = `Could not load the article: ${error.message}`;
  }
}

function addEntry(role, text) {
  const item = document.createElement("li");
  item.className = role;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.append(body);
  $("log").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

// Server-sent events from /v1/chat/completions: calls onEvent(parsed JSON) per "data:" line.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function ask(question) {
  state.messages.push({ role: "user", content: question });
  addEntry("user", question);
  const item = addEntry("assistant", "");
  item.classList.add("streaming");
  const body = item.querySelector(".text");
  let text = "";
  let final = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({
        model: $("model").value || "newsdesk",
        messages: state.messages,
        stream: true,
        sources_in_content: false,
      }),
    });
    await checked(response);
    await readEvents(response, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices?.[0];
      if (choice?.delta?.content) {
        text += choice.delta.content;
        body.textContent = text;
      }
      if (choice?.finish_reason) final = chunk;
    });
  } catch (error) {
    item.remove();
    state.messages.pop();
    reportError(error);
    return;
  } finally {
    item.classList.remove("streaming");
  }
  const citations = final?.citations || [];
  const info = final?.newsdesk || {};
  renderCited(body, info.answer || text, citations);
  if (info.refused) item.classList.add("refused");
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = [
    info.engine && `${info.engine} engine`,
    info.degraded && "degraded: the LLM was unavailable",
    info.standalone_question && info.standalone_question !== question && `searched for: ${info.standalone_question}`,
    ...(info.notes || []),
  ].filter(Boolean).join(" · ");
  item.append(meta);
  state.messages.push({ role: "assistant", content: info.answer || text });
}

async function brief(articleId, topic) {
  const box = $("brief-result");
  box.hidden = false;
  box.textContent = "Writing the brief…";
  const request = articleId ? { article_id: articleId } : { topic };
  let result;
  try {
    const response = await fetch("/v1/brief", { method: "POST", headers: headers(), body: JSON.stringify(request) });
    result = await (await checked(response)).json();
  } catch (error) {
    box.textContent = error.message;
    if (error.status === 401) reportError(error);
    return;
  }
  const heading = document.createElement("h2");
  heading.textContent = `Quick Looks: ${briefSubject(result, articleId, topic)}`;
  const list = document.createElement("ul");
  const shownNumber = numbering();
  for (const bullet of result.bullets || []) {
    const item = document.createElement("li");
    const markers = (bullet.citations || []).map((c) => ` [${c.number}]`).join("");
    renderCited(item, bullet.text + markers, bullet.citations || [], shownNumber);
    list.append(item);
  }
  box.replaceChildren(heading, list);
  if (result.disagreements?.length) {
    const title = document.createElement("h3");
    title.textContent = "Where the sources disagree";
    const differences = document.createElement("ul");
    differences.className = "disagreements";
    differences.append(...result.disagreements.map((text) => Object.assign(document.createElement("li"), { textContent: text })));
    box.append(title, differences);
  }
  for (const note of result.notes || []) {
    const p = document.createElement("p");
    p.className = "meta note";
    p.textContent = note;
    box.append(p);
  }
}

// An article brief is headed with the article's title; a topic brief with the topic.
function briefSubject(result, articleId, topic) {
  if (!articleId) return result.subject || topic;
  const cited = result.bullets?.[0]?.citations?.[0];
  return state.titles.get(articleId) || cited?.title || articleId;
}

async function loadChoices() {
  try {
    const models = await getJSON("/v1/models");
    $("model").replaceChildren(...models.data.map((m) => new Option(m.id, m.id)));
    const articles = await getJSON("/v1/articles?limit=200");
    const choices = $("brief-article");
    choices.replaceChildren(choices.options[0]);
    for (const a of articles) {
      state.titles.set(a.id, a.title);
      choices.append(new Option(`${a.published_at.slice(0, 10)} ${a.title}`, a.id));
    }
  } catch (error) {
    reportError(error);
  }
}

function busy(button, running) {
  button.disabled = running;
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = localStorage.getItem("newsdesk-api-key") || "";
  $("api-key").addEventListener("change", () => {
    localStorage.setItem("newsdesk-api-key", $("api-key").value.trim());
    loadChoices();
  });
  $("ask-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (!question) return;
    $("question").value = "";
    busy($("ask"), true);
    try {
      await ask(question);
    } finally {
      busy($("ask"), false);
      $("question").focus();
    }
  });
  $("new-chat").addEventListener("click", () => {
    state.messages = [];
    $("log").replaceChildren();
  });
  $("brief-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const articleId = $("brief-article").value;
    const topic = $("brief-topic").value.trim();
    if (!articleId && !topic) {
      showError("Pick an article or type a topic to brief.");
      return;
    }
    busy($("brief"), true);
    try {
      await brief(articleId, topic);
    } finally {
      busy($("brief"), false);
    }
  });
  $("close-source").addEventListener("click", () => { $("source").hidden = true; });
  loadChoices();
});

// Uploads: each file is ingested as a job (202 and a Location to poll); its line shows the progress,
// then the outcome. Files are sent together, so a short one is not kept waiting by a long one.
const JOB_POLL_MS = 500;

function jobProgress(job) {
  if (job.status === "queued") return "waiting to be ingested…";
  const { chunks_done: done, chunks_total: total } = job.progress;
  return total ? `ingesting: ${done} of ${total} chunks` : "ingesting…";
}

async function uploadFile(file, line) {
  const form = new FormData();
  form.append("file", file);
  const response = await fetch("/v1/articles/upload", { method: "POST", headers: headers(false), body: form });
  if (!response.ok) throw new Error(await failure(response));
  let job = await response.json();
  const location = response.headers.get("Location") || `/v1/jobs/${encodeURIComponent(job.id)}`;
  while (job.status === "queued" || job.status === "running") {
    line.textContent = `${file.name}: ${jobProgress(job)}`;
    await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
    job = await getJSON(location);
  }
  if (job.status === "failed") throw new Error(job.error?.message || "the ingest failed");
  return job.article;
}

async function uploadFiles(files) {
  await Promise.all(files.map(async (file) => {
    const line = document.createElement("li");
    line.textContent = `${file.name}: uploading…`;
    $("upload-status").append(line);
    try {
      const article = await uploadFile(file, line);
      const chunks = `${article.chunks} chunk${article.chunks === 1 ? "" : "s"}`;
      line.textContent = `${file.name}: ${article.status}, “${article.title}” (${chunks})`;
      line.className = "done";
      if (article.status === "added") $("brief-article").append(new Option(article.title, article.id));
    } catch (error) {
      line.textContent = `${file.name}: ${error.message}`;
      line.className = "failed";
    }
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  $("upload-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const files = [...$("upload-file").files];
    if (!files.length) {
      showError("Choose a .txt, .md or .html file to upload.");
      return;
    }
    $("upload").disabled = true;
    try {
      await uploadFiles(files);
    } finally {
      $("upload").disabled = false;
      $("upload-file").value = "";
    }
  });
});
