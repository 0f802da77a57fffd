"""Stage 1: files -> Articles. Newslooks text, Markdown/plain text, saved HTML, JSON/JSONL.

Every problem becomes a ParseError naming the file (and line) and what to fix; a file
with a bad record still yields its good records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from app.article import Article, Section, make_article_id, normalize_date, normalize_text
from app.errors import ParseError

Format = Literal["auto", "newslooks", "markdown", "text", "html", "jsonl"]
FORMATS: tuple[str, ...] = ("auto", "newslooks", "markdown", "text", "html", "jsonl")
EXTENSIONS: dict[str, Format] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
SKIPPED_NAMES = re.compile(r"^(readme|license|licence|changelog)(\..*)?$", re.IGNORECASE)
SITE_FOOTERS = (re.compile(r"\s*You must Register or Login to post a comment\.?\s*$"),)
_QUICK_LOOKS_HEADING = re.compile(r"quick looks\s*:?\s*$", re.IGNORECASE)
_BULLET = re.compile(r"^\s*[-•*]\s+")
_FRONT_MATTER_KEYS = ("id", "title", "source", "url", "published_at", "date", "author")


@dataclass(frozen=True)
class _BinaryFormat:
    """A document format people try to ingest that is not text, known by its extension or first bytes."""

    what: str
    advice: str  # may use {name}, {txt} and {md}: the file's name, and names for its converted copies
    extensions: tuple[str, ...]
    magic: tuple[bytes, ...] = ()


BINARY_FORMATS = (
    _BinaryFormat(
        "a PDF",
        "PDFs are not supported; convert it to text or HTML first (for example 'pdftotext {name} {txt}') "
        "and ingest that file",
        (".pdf",),
        (b"%PDF-",),
    ),
    _BinaryFormat(
        "a word-processor document",
        "Word, OpenDocument and RTF files are not supported; save it as plain text (.txt) or HTML (.html), "
        "or convert it (for example 'pandoc {name} -o {md}'), and ingest that file",
        (".docx", ".doc", ".odt", ".rtf", ".pages"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"{\\rtf"),
    ),
    _BinaryFormat(
        "an image",
        "images are not supported; newsdesk reads article text (.txt, .md, .html, .jsonl)",
        (".png", ".jpg", ".jpeg", ".gif", ".webp", ".tif", ".tiff", ".heic"),
        (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*"),
    ),
    _BinaryFormat(
        "an archive",
        "archives are not supported; unpack it and ingest the folder (a .docx, .xlsx or .epub is a ZIP "
        "archive too: save those as text or HTML)",
        (".zip", ".gz", ".tgz", ".7z", ".xlsx", ".pptx", ".epub"),
        (b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf\x27\x1c"),
    ),
)


@dataclass
class ParsedFile:
    path: Path
    articles: list[Article] = field(default_factory=list)
    errors: list[ParseError] = field(default_factory=list)


def discover(paths: Iterable[Path]) -> tuple[list[Path], list[ParseError]]:
    """Expand folders (recursively, supported types only); explicit files are always kept."""
    found: list[Path] = []
    errors: list[ParseError] = []
    for path in paths:
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in candidate.relative_to(path).parts)
                if (
                    candidate.is_file()
                    and not hidden
                    and candidate.suffix.lower() in EXTENSIONS
                    and not SKIPPED_NAMES.match(candidate.name)
                ):
                    found.append(candidate)
        elif path.is_file():
            found.append(path)
        else:
            errors.append(ParseError(str(path), "no such file or folder"))
    return found, errors


def parse_file(path: Path, *, fmt: Format = "auto", max_bytes: int) -> ParsedFile:
    result = ParsedFile(path)
    try:
        raw = read_text(path, max_bytes)
        kind = fmt if fmt != "auto" else _format_for(path)
        if kind == "jsonl":
            for item in parse_records(raw, origin=str(path)):
                if isinstance(item, ParseError):
                    result.errors.append(item)
                else:
                    result.articles.append(item)
        else:
            result.articles.append(parse_document(raw, kind, origin=str(path), fallback_title=path.stem))
    except ParseError as error:
        result.errors.append(error)
    return result


def read_text(path: Path, max_bytes: int) -> str:
    name = str(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ParseError(
                name,
                f"file is {size:,} bytes, over the {max_bytes:,}-byte limit "
                "(split it, or raise NEWSDESK_MAX_FILE_BYTES)",
            )
        data = path.read_bytes()
    except OSError as error:
        raise ParseError(name, f"cannot read file ({error.strerror})") from error
    check_not_binary_document(path, data)
    if b"\x00" in data[:8192]:
        raise ParseError(name, "looks like a binary file (it contains NUL bytes); expected UTF-8 text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ParseError(
            name,
            f"is not valid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start}); re-save it as UTF-8",
        ) from error
    if not text.strip():
        raise ParseError(name, "file is empty")
    return text


def check_not_binary_document(path: Path, data: bytes) -> None:
    """ParseError saying what a PDF, Word file, image or archive is and how to get text out of it.

    The extension decides first (a .docx is a ZIP archive inside), then the first bytes."""
    described = describe_binary_document(path, data)
    if described is not None:
        raise ParseError(str(path), described)


def describe_binary_document(path: Path, data: bytes) -> str | None:
    """What a PDF, Word file, image or archive is and how to get text out of it; None for anything else."""
    suffix = path.suffix.lower()
    found = next((f for f in BINARY_FORMATS if suffix in f.extensions), None) or next(
        (f for f in BINARY_FORMATS if data.startswith(f.magic)), None
    )
    if found is None:
        return None
    advice = found.advice.format(name=path.name, txt=_converted_name(path, ".txt"), md=_converted_name(path, ".md"))
    return f"this is {found.what}, not text: {advice}"


def _converted_name(path: Path, suffix: str) -> str:
    """A name for a text copy of ``path`` that is not ``path`` itself."""
    same = path.suffix.lower() == suffix
    return f"{path.stem}.converted{suffix}" if same else path.with_suffix(suffix).name


def _format_for(path: Path) -> Format:
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise ParseError(
            str(path),
            f"unsupported file type '{path.suffix or '(none)'}'; use .txt, .md, .html or .jsonl, or pass --format",
        )
    return kind


def parse_document(raw: str, kind: Format, *, origin: str, fallback_title: str = "") -> Article:
    """One article from the text of a file of the given kind ('text' sniffs for Newslooks)."""
    if kind == "html":
        return parse_html(raw, origin=origin, fallback_title=fallback_title)
    meta, text = split_front_matter(raw, origin)
    text = normalize_text(text)
    if not text:
        raise ParseError(origin, "no article text after the front matter")
    if kind == "newslooks" or (kind == "text" and looks_like_newslooks(text)):
        return parse_newslooks(text, meta, origin=origin)
    return parse_markdown(text, meta, origin=origin, fallback_title=fallback_title)


def split_front_matter(raw: str, origin: str) -> tuple[dict[str, Any], str]:
    if not raw.startswith("---"):
        return {}, raw
    match = re.match(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", raw, re.DOTALL)
    if not match:
        raise ParseError(origin, "front matter opened with '---' is never closed by a '---' line")
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as error:
        raise ParseError(origin, f"front matter is not valid YAML ({error})") from error
    if not isinstance(meta, dict):
        raise ParseError(origin, "front matter must be YAML 'key: value' lines")
    return {str(k).lower(): v for k, v in meta.items()}, raw[match.end() :]


def looks_like_newslooks(text: str) -> bool:
    first_line = text.split("\n", 1)[0]
    lines = {line.strip().lower() for line in text.split("\n")}
    return first_line.count("/ ") >= 4 and "deep look" in lines


def parse_newslooks(text: str, meta: dict[str, Any], *, origin: str) -> Article:
    lines = text.split("\n")
    fields = [part.strip() for part in lines[0].split("/ ", 5)]
    if len(fields) < 5:
        raise ParseError(origin, "first line must be 'headline/ outlet/ dateline/ author/ show/ summary'")
    headline, outlet, dateline, author = fields[:4]
    summary_parts = [fields[5]] if len(fields) == 6 and fields[5] else []
    deep_look = next((i for i, line in enumerate(lines) if line.strip().lower() == "deep look"), None)
    if deep_look is None:
        raise ParseError(origin, "no 'Deep Look' line: the article body must follow a line 'Deep Look'")

    quick_looks: list[str] = []
    in_quick_looks = False
    for line in lines[1:deep_look]:
        stripped = line.strip()
        if _QUICK_LOOKS_HEADING.search(stripped):
            in_quick_looks = True
        elif in_quick_looks and _BULLET.match(line):
            quick_looks.append(_BULLET.sub("", line).strip())
        elif in_quick_looks and stripped:
            in_quick_looks = False
        elif not quick_looks and not in_quick_looks and stripped and stripped != headline:
            summary_parts.append(stripped)

    body_lines = lines[deep_look + 1 :]
    if len(body_lines) > 1:
        body_lines.pop(0)  # the subheadline: a second headline, not article text
    paragraphs = [line.strip() for line in body_lines if line.strip()]
    if paragraphs:
        paragraphs[-1] = _strip_footer(paragraphs[-1])
    paragraphs = [p for p in paragraphs if p]
    if not paragraphs:
        raise ParseError(origin, "the Deep Look body is empty")

    summary = " ".join(summary_parts)
    body = "\n\n".join(paragraphs)
    text_out = f"{summary}\n\n{body}" if summary else body
    body_start = len(text_out) - len(body)
    sections = ([Section("summary", 0, len(summary))] if summary else []) + [Section("body", body_start, len(text_out))]
    return _article(
        meta,
        origin=origin,
        title=headline,
        text=text_out,
        sections=sections,
        source=outlet,
        author=author,
        dateline=dateline,
        summary=summary,
        quick_looks=quick_looks,
    )


def _strip_footer(paragraph: str) -> str:
    for footer in SITE_FOOTERS:
        paragraph = footer.sub("", paragraph)
    return paragraph.strip()


def parse_markdown(text: str, meta: dict[str, Any], *, origin: str, fallback_title: str) -> Article:
    """Markdown or plain text. '#' headings name sections; the first one may be the title."""
    lines = text.split("\n")
    title = str(meta.get("title") or "")
    if not title and lines and lines[0].startswith("# "):
        title = lines.pop(0)[2:].strip()
    elif not title and len(lines) > 2 and _looks_like_title(lines[0]) and not lines[1].strip():
        title = lines.pop(0).strip()
    pieces: list[tuple[str, str]] = []
    section, buffer = "body", list[str]()
    for line in lines:
        heading = re.match(r"^#{1,6}\s+(.+?)\s*#*$", line)
        if heading:
            pieces.append((section, "\n".join(buffer).strip()))
            section, buffer = heading.group(1), []
        else:
            buffer.append(line)
    pieces.append((section, "\n".join(buffer).strip()))

    text_out, sections = "", []
    for name, content in pieces:
        if not content:
            continue
        if text_out:
            text_out += "\n\n"
        sections.append(Section(name, len(text_out), len(text_out) + len(content)))
        text_out += content
    if not text_out:
        raise ParseError(origin, "no article text found")
    return _article(meta, origin=origin, title=title or fallback_title, text=text_out, sections=sections)


def _looks_like_title(line: str) -> bool:
    return 0 < len(line) <= 150 and not line.rstrip().endswith((".", "!", "?", ":", ";", ","))


def parse_html(raw: str, *, origin: str, fallback_title: str = "") -> Article:
    import trafilatura

    if "<" not in raw:
        raise ParseError(origin, "does not look like HTML (no tags)")
    body = trafilatura.extract(
        raw, output_format="txt", include_comments=False, include_tables=False, favor_precision=True
    )
    if not body or not body.strip():
        raise ParseError(origin, "no article text could be extracted from this HTML page")
    found = trafilatura.extract_metadata(raw)
    meta: dict[str, Any] = {}
    if found is not None:
        meta = {
            "title": found.title,
            "url": found.url,
            "source": found.sitename,
            "published_at": found.date,
            "author": found.author,
        }
    text = normalize_text(body)
    text = re.sub(r"\n+", "\n\n", text)
    return _article(
        {k: v for k, v in meta.items() if v},
        origin=origin,
        title=str(meta.get("title") or fallback_title),
        text=text,
        sections=[Section("body", 0, len(text))],
    )


# What json's messages mean, in words (the decoder's own message is used for any other).
_JSON_PROBLEMS = {
    "Expecting value": "a value is missing or is not JSON (text goes in double quotes; true, false, null are "
    "lower case)",
    "Expecting property name enclosed in double quotes": "a key must be in double quotes, and there must be no "
    "comma before a closing brace",
    "Expecting ',' delimiter": "a comma is missing between two items",
    "Expecting ':' delimiter": "a colon is missing after a key",
    "Unterminated string starting at": "the string that starts there is never closed with a double quote",
    "Invalid control character at": "a string holds a raw line break or tab; write it as \\n or \\t",
    "Invalid \\escape": "a backslash starts an unknown escape; write a backslash as \\\\",
    "Invalid \\uXXXX escape": "a \\u escape needs four hex digits",
    "Extra data": "something follows the end of the JSON value (one record per line in JSON Lines)",
}


def json_problem(error: json.JSONDecodeError, *, line: int | None = None) -> str:
    """'not valid JSON at line L, column C: <what is wrong, in words>' (``line`` given: 'at column C')."""
    where = f"column {error.colno}" if line is not None else f"line {error.lineno}, column {error.colno}"
    return f"not valid JSON at {where}: {_JSON_PROBLEMS.get(error.msg, error.msg)}"


def parse_records(raw: str, *, origin: str) -> Iterator[Article | ParseError]:
    """JSON Lines, or one JSON array or object (over any number of lines), of
    {id, title, source, published_at, url, body}. Errors name the file and the line (or array item)."""
    numbered: Iterable[tuple[str, int, Any]]
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as error:
        if _is_json_lines(raw):
            numbered = _json_lines(raw)
        else:
            yield ParseError(origin, json_problem(error))
            return
    else:
        if isinstance(document, list):
            numbered = (("item", n, item) for n, item in enumerate(document, start=1))
        else:  # one record, on one line (JSON Lines) or over several
            numbered = [("line", raw[: len(raw) - len(raw.lstrip())].count("\n") + 1, document)]
    for label, number, record in numbered:
        where = f"{origin}, {label} {number}"
        if isinstance(record, ParseError):
            yield ParseError(where, record.problem)
            continue
        try:
            yield parse_record(record, origin=f"{origin}:{number}" if label == "line" else f"{origin}[{number}]")
        except ParseError as error:
            yield ParseError(where, error.problem)


def _is_json_lines(raw: str) -> bool:
    """Not an array, and more than one line, one of which is a whole JSON object: JSON Lines (with bad
    lines), not one broken document."""
    lines = [line for line in raw.split("\n") if line.strip()]
    return not raw.lstrip().startswith("[") and len(lines) > 1 and any(_is_json_object(line) for line in lines)


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def _json_lines(raw: str) -> Iterator[tuple[str, int, Any]]:
    for number, line in enumerate(raw.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield "line", number, json.loads(line)
        except json.JSONDecodeError as error:
            yield "line", number, ParseError("", json_problem(error, line=number))


def parse_record(record: Any, *, origin: str) -> Article:
    if not isinstance(record, dict):
        raise ParseError(origin, "each record must be a JSON object with at least a 'body'")
    body = record.get("body")
    if not isinstance(body, str) or not body.strip():
        raise ParseError(origin, "record has no 'body' text")
    for key in ("id", "title", "source", "url", "published_at", "author"):
        if record.get(key) is not None and not isinstance(record[key], str | int):
            raise ParseError(origin, f"'{key}' must be a string")
    text = normalize_text(body)
    if not text:
        raise ParseError(origin, "record has no 'body' text")
    meta = {k: record[k] for k in _FRONT_MATTER_KEYS if record.get(k) not in (None, "")}
    title = str(meta.get("title") or text.split("\n", 1)[0][:100])
    return _article(meta, origin=origin, title=title, text=text, sections=[Section("body", 0, len(text))])


def _article(
    meta: dict[str, Any], *, origin: str, title: str, text: str, sections: list[Section], **extra: Any
) -> Article:
    url = str(meta.get("url") or "").strip()
    title = normalize_text(str(meta.get("title") or title)).replace("\n", " ")
    try:
        published_at = normalize_date(meta.get("published_at") or meta.get("date"))
    except (ValueError, TypeError) as error:
        raise ParseError(
            origin, f"published_at '{meta.get('published_at') or meta.get('date')}' is not a date; use YYYY-MM-DD"
        ) from error
    explicit_id = str(meta["id"]) if meta.get("id") not in (None, "") else None
    return Article(
        id=make_article_id(explicit_id, url, title, text),
        title=title,
        text=text,
        sections=sections,
        source=str(meta.get("source") or extra.pop("source", "") or ""),
        url=url,
        published_at=published_at,
        author=str(meta.get("author") or extra.pop("author", "") or ""),
        origin=origin,
        **{k: v for k, v in extra.items() if k in ("dateline", "summary", "quick_looks")},
    )
