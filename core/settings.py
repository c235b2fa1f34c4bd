"""Typed settings for the whole app, read once from the environment (prefix ``ANIMA_``).

Every file Anima writes lives under ``data_dir`` so that one folder can be backed up,
moved or deleted to reset an install. Nothing here reaches the network: the defaults
are the models that ship inside PyPI packages.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All knobs of an Anima install. See the README's settings table for each one."""

    model_config = SettingsConfigDict(env_prefix="ANIMA_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 7860
    data_dir: Path = Path("./data")
    database_url: str | None = Field(
        default=None,
        description="Any SQLAlchemy URL; default is SQLite (WAL) at <data_dir>/anima.db.",
    )
    max_upload_mb: float = Field(default=20.0, gt=0)
    log_level: str = "INFO"

    # Language model
    llm_backend: Literal["local", "openai"] = "local"
    llm_model: str = Field(
        default="bundled:smollm2",
        description="'bundled:smollm2', a Hugging Face id, or a local model directory.",
    )
    llm_gguf_file: str | None = Field(
        default=None,
        description="GGUF file inside llm_model to load (transformers dequantises it).",
    )
    llm_dtype: Literal["auto", "bfloat16", "float32", "float16"] = "auto"
    llm_context_window: int | None = Field(
        default=None, description="Override the model's context window (tokens)."
    )
    model_cache_dir: Path | None = Field(
        default=None, description="Where converted models are cached; default <data_dir>/models."
    )
    llm_preload: bool = Field(
        default=True, description="Load the default model in the background at start-up."
    )
    llm_threads: int | None = Field(
        default=None, description="torch / llama.cpp CPU threads; default all cores."
    )
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_api_key: str = "not-needed"
    openai_model: str = "default"
    openai_timeout_s: float = 120.0

    # Serving (issue 10): engine, admission and scheduling of model requests
    llm_engine: Literal["auto", "llamacpp", "transformers"] = Field(
        default="auto",
        description="Local engine: 'llamacpp' (xllamacpp, continuous batching, per-request "
        "LoRA), 'transformers', or 'auto' (llamacpp when installed).",
    )
    llm_engine_format: Literal["source", "q4_0", "q8_0", "f16", "f32"] = Field(
        default="source",
        description="Weights the llama.cpp engine serves: 'source' uses a GGUF as it is "
        "(a Hugging Face folder becomes f16); others re-encode once and cache the file.",
    )
    llm_parallel: int = Field(
        default=8, ge=1, le=256, description="Sequences the engine decodes in the same steps."
    )
    llm_kv_tokens: int = Field(
        default=16384,
        ge=512,
        description="llama.cpp KV cache size in tokens, shared by all parallel sequences.",
    )
    llm_queue_size: int = Field(
        default=64, ge=0, description="Requests that may wait for a model; beyond: HTTP 429."
    )
    llm_request_timeout_s: float = Field(
        default=300.0, gt=0, description="Deadline of one request, queue wait included."
    )
    llm_stream_buffer: int = Field(
        default=1024,
        ge=1,
        description="Text pieces buffered for a slow reader before its generation is stopped.",
    )
    llm_adapter_budget_mb: float = Field(
        default=512.0,
        gt=0,
        description="Memory for LoRA adapters held by the engine; least recently used go first.",
    )
    llm_max_models: int = Field(
        default=2,
        ge=1,
        description="Base models kept loaded at once; the least recently used idle one goes.",
    )

    # Jobs (issue 6)
    jobs_database_url: str | None = Field(
        default=None,
        description="dbos system database. Default: ANIMA_DATABASE_URL when it is PostgreSQL, "
        "else SQLite at <data_dir>/jobs.sqlite.",
    )
    jobs_run_in_app: bool = Field(
        default=True,
        description="Run jobs inside the app process. False: the app only enqueues and "
        "`python app.py worker` processes run them (they must share a PostgreSQL database).",
    )
    jobs_executor_id: str | None = Field(
        default=None,
        description="This process's dbos executor id; default 'local' in the app, "
        "'<hostname>-<pid>' in a worker. Each running process needs its own.",
    )
    jobs_concurrency: int = Field(default=2, ge=1, description="Jobs run at once per process.")
    jobs_poll_interval_s: float = Field(
        default=0.2, gt=0, le=10, description="How often an idle executor looks for new jobs."
    )
    jobs_extra_modules: str = Field(
        default="",
        description="Comma-separated extra modules that define @job_kind functions (plugins, "
        "tests), imported by the app and by every worker.",
    )

    # Hardening (issue 5)
    allowed_hosts: str = Field(
        default="",
        description="Comma-separated host names served besides ANIMA_HOST, localhost, "
        "127.0.0.1 and [::1]; '*.example.com' allows its subdomains, '*' turns the check off.",
    )
    allowed_origins: str = Field(
        default="",
        description="Comma-separated origins (scheme://host[:port]) that may call the app from "
        "another site: CORS is on for exactly these and their writes pass the cross-site check.",
    )
    max_request_mb: float = Field(
        default=4.0, gt=0, description="Largest request body that is not a file upload."
    )
    max_image_pixels: int = Field(
        default=40_000_000,
        gt=0,
        description="Largest avatar/card image (width x height), read from its header before "
        "anything is decoded.",
    )

    @property
    def allowed_host_list(self) -> list[str]:
        return [h.strip() for h in self.allowed_hosts.split(",") if h.strip()]

    @property
    def allowed_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'anima.db').resolve()}"

    @cached_property
    def resolved_jobs_database_url(self) -> str:
        if self.jobs_database_url:
            return self.jobs_database_url
        if self.resolved_database_url.startswith("postgresql"):
            return self.resolved_database_url
        return f"sqlite:///{(self.data_dir / 'jobs.sqlite').resolve()}"

    @property
    def agents_dir(self) -> Path:
        """Per-agent files (avatar, card assets) live in ``agents/<agent id>/``."""
        return self.data_dir / "agents"

    @property
    def models_dir(self) -> Path:
        """Converted model caches (e.g. the bundled GGUF saved as safetensors)."""
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def adapters_dir(self) -> Path:
        """LoRA adapters agents may name (``<data_dir>/adapters/<name>``)."""
        return self.data_dir / "adapters"

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.agents_dir, self.models_dir, self.adapters_dir):
            path.mkdir(parents=True, exist_ok=True)
