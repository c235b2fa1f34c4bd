"""Anima's entry point: settings, services, the FastAPI app and the Gradio UI, built once.

``python app.py`` (or ``make run``) serves everything on ``ANIMA_HOST:ANIMA_PORT``:
the studio UI at ``/ui``, the REST API at ``/api``, the OpenAI-compatible API at ``/v1`` and
the OpenAPI document at ``/openapi.json``.
"""

from __future__ import annotations

import os

# Before gradio / transformers are imported: no phoning home, no hub look-ups.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import logging
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from api.agents_router import router as agents_router
from api.auth_router import router as auth_router
from api.chain_router import router as chain_router
from api.chat_router import router as chat_router
from api.chat_transfer_router import router as chat_transfer_router
from api.economy_router import router as economy_router
from api.errors import install_error_handlers
from api.finetune_router import router as finetune_router
from api.group_router import router as group_router
from api.guards import MULTIPART_OVERHEAD, install_guards
from api.inspector_router import router as inspector_router
from api.jobs_router import router as jobs_router
from api.knowledge_router import router as knowledge_router
from api.limits import install_limits
from api.lorebook_router import router as lorebook_router
from api.memory_router import router as memory_router
from api.models_router import router as models_router
from api.openai_router import router as openai_router
from api.personas_router import router as personas_router
from api.shares_router import router as shares_router
from api.usage_router import router as usage_router
from api.visitor import install_visitor_cookie
from api.voice_router import router as voice_router
from container import Services, build_services
from core.settings import Settings

log = logging.getLogger("anima")
UI_PATH = "/ui"
ROUTERS = (
    agents_router,
    chat_router,
    group_router,
    chat_transfer_router,
    openai_router,
    jobs_router,
    knowledge_router,
    auth_router,
    chain_router,
    voice_router,
    finetune_router,
    usage_router,
    personas_router,
    memory_router,
    inspector_router,
    models_router,
    shares_router,
    lorebook_router,
    economy_router,
)


def create_app(
    settings: Settings | None = None, services: Services | None = None, start_jobs: bool = False
) -> FastAPI:
    """The whole app; tests pass their own settings (a temp data dir) or services.

    With ``start_jobs`` (``python app.py``) the app runs background jobs from start-up;
    otherwise it starts running them on the first submit, or at start-up when jobs are pending.
    """
    settings = settings or (services.settings if services else Settings())
    svc = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.llm.preload:
            # Load the default model in the background so the first reply is quick.
            threading.Thread(target=_warm, args=(svc,), daemon=True).start()
        if settings.jobs.run_in_app and (start_jobs or svc.jobs.has_unfinished_jobs()):
            svc.jobs.start_executor()  # resume what a crash or restart interrupted
        if start_jobs:  # on-chain identity: start anvil, deploy on first start
            threading.Thread(target=_start_chain, args=(svc,), daemon=True).start()
        yield
        svc.close()

    app = FastAPI(
        title="Anima",
        version="0.1.0",
        description="Role-play AI agents: REST API and an OpenAI-compatible endpoint "
        "where each agent is a model.",
        lifespan=lifespan,
    )
    app.state.services = svc
    install_error_handlers(app)
    install_visitor_cookie(app, settings, svc.visitors)  # inside the guards: refusals get none
    limits = install_guards(app, settings)  # Host allow-list, cross-site check, body caps
    for pattern, cap in upload_caps(settings).items():
        limits.allow(pattern, cap + MULTIPART_OVERHEAD)
    install_limits(app)  # API keys: scopes, agents, rates, budgets (before the routers)
    for router in ROUTERS:
        app.include_router(router)
    _add_meta_routes(app, svc)

    # Imported here, not at the top: gradio takes seconds to import and a job worker
    # (`python app.py worker`) never serves the UI.
    import gradio as gr

    from ui.studio import build_ui, page_options

    return gr.mount_gradio_app(
        app,
        build_ui(svc),
        path=UI_PATH,
        max_file_size=max(upload_caps(settings).values()),
        **page_options(),
    )


def _add_meta_routes(app: FastAPI, svc: Services) -> None:
    """``/api/health`` for monitors, and ``/`` sending a browser to the studio."""
    settings = svc.settings

    @app.get("/api/health", tags=["meta"])
    async def health() -> dict[str, object]:
        # async and lock-light: answers on the event loop, never behind model requests
        return {
            "status": "ok",
            "llm_backend": settings.llm.backend,
            "llm_model": settings.llm.model,
            "llm_requests": svc.llm.scheduler.stats(),  # queued / running
        }

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(url=f"{UI_PATH}/")


def upload_caps(settings: Settings) -> dict[str, int]:
    """Routes whose files may be larger than ``ANIMA_MAX_UPLOAD_MB``, with their own caps.

    The guards cap every body while it streams in; these routes raise that cap to their
    feature's setting (and read the file with the same cap). The studio uploads through
    Gradio's one upload route, so that route gets the largest.
    """
    caps = {
        r"^/api/knowledge-bases/[^/]+/documents$": settings.knowledge.max_upload_bytes,
        r"^/api/agents/[^/]+/voice$": settings.voice.max_upload_bytes,
        r"^/api/voice/check$": settings.voice.max_upload_bytes,
        r"^/v1/audio/transcriptions$": settings.voice.max_upload_bytes,
    }
    caps[rf"^{UI_PATH}/gradio_api/upload$"] = max(settings.server.max_upload_bytes, *caps.values())
    return caps


def _warm(svc: Services) -> None:
    try:
        backend = svc.llm.get()
        load = getattr(backend, "load", None)
        if callable(load):
            load()
        log.info("language model ready: %s", backend.model_name)
    except Exception as exc:  # the UI/API report the error on use; the app keeps serving
        log.warning("could not preload the language model: %s", exc)


def _start_chain(svc: Services) -> None:
    try:
        info = svc.chain.start()
        log.info("chain ready: AgentNFT %s on chain %s", info.address, svc.chain.chain_id)
    except Exception as exc:  # minting waits for the node; drafts work without it
        log.warning("could not start the chain: %s", exc)
    svc.economy.start()  # settles paid usage in batches (batches a crash left open first)


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if sys.argv[1:2] == ["economy"]:  # `python app.py economy audit|settle`
        from economy.commands import main as economy_command

        raise SystemExit(economy_command(sys.argv[2:], settings))
    if sys.argv[1:2] == ["chain"]:  # `python app.py chain deploy|info`
        from chain.commands import main as chain_command

        raise SystemExit(chain_command(sys.argv[2:], settings))
    if len(sys.argv) > 1:  # `python app.py worker` / `python app.py recover EXECUTOR_ID`
        from core.job_commands import main as job_command

        raise SystemExit(job_command(sys.argv[1:], settings))
    # Gradio's upload cache lives in the data folder too, not in /tmp.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(settings.data_dir.resolve() / "cache" / "gradio"))
    app = create_app(settings, start_jobs=True)
    log.info(
        "Anima on http://%s:%s%s/ (API docs at /docs)",
        settings.server.host,
        settings.server.port,
        UI_PATH,
    )
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
