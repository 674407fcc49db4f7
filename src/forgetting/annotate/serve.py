"""``forgetting serve``: a labelling project as a Label Studio ML backend, over HTTP.

The routes are those of Label Studio's ML backend API (as ``label_studio_ml/api.py`` of
label-studio-ml-backend defines them, and Label Studio's ``ml/api_connector.py`` calls them):

* ``GET /health`` (and ``GET /``): ``{"status": "UP", ...}``;
* ``POST /setup``: ``{"model_version": ...}`` for the connecting project (its interface is checked);
* ``POST /predict``: ``{"results": [...]}``, one prediction per task of ``{"tasks": [...]}``;
* ``POST /webhook``: annotation events (``ANNOTATION_CREATED``, ``ANNOTATIONS_CREATED``,
  ``ANNOTATION_UPDATED``) and ``START_TRAINING``; answered ``201``.

What the calls do is :class:`~forgetting.annotate.live.LiveProject`'s. The server is Starlette on uvicorn,
installed with the ``labelstudio`` extra (``pip install 'forgetting[labelstudio]'``) and imported only here.
Errors a user can fix come back as ``{"error": message}`` with status 400 (Label Studio shows the message
when it connects the backend).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgetting.annotate.live import LiveProject, LiveSettings
from forgetting.exceptions import ForgettingError, ProjectError

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["create_app", "serve"]

logger = logging.getLogger(__name__)


def _require_server() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ProjectError(
            f"`forgetting serve` needs the labelstudio extra ({exc.name} is missing): "
            "pip install 'forgetting[labelstudio]'"
        ) from None


def create_app(live: LiveProject, *, worker: bool = True) -> Starlette:
    """The Starlette application of ``live``; with ``worker``, its worker thread runs while the app does.

    Raises:
        ProjectError: the ``labelstudio`` extra is not installed.
    """
    _require_server()
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def endpoint(call: Callable[..., dict[str, Any]], *, body: bool, status: int = 200) -> Any:
        async def handle(request: Request) -> JSONResponse:
            try:
                if body:
                    try:
                        payload = await request.json()
                    except ValueError:
                        return JSONResponse({"error": "the request body is not JSON"}, status_code=400)
                    if not isinstance(payload, dict):
                        return JSONResponse({"error": "the request body must be a JSON object"}, 400)
                    result = await run_in_threadpool(call, payload)
                else:
                    result = await run_in_threadpool(call)
            except ForgettingError as exc:
                logger.warning("%s %s: %s", request.method, request.url.path, exc)
                return JSONResponse({"error": str(exc)}, status_code=400)
            except Exception as exc:
                logger.exception("%s %s failed", request.method, request.url.path)
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)
            return JSONResponse(result, status_code=status)

        return handle

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if worker:
            live.start()
        try:
            yield
        finally:
            if worker:
                await run_in_threadpool(live.stop)

    health = endpoint(live.health, body=False)
    routes = [
        Route("/", health, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/setup", endpoint(live.setup, body=True), methods=["POST"]),
        Route("/predict", endpoint(live.predict, body=True), methods=["POST"]),
        Route("/webhook", endpoint(live.webhook, body=True, status=201), methods=["POST"]),
        Route("/metrics", endpoint(lambda: {}, body=False), methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def serve(
    root: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 9090,
    settings: LiveSettings | None = None,
    log_level: str = "info",
) -> None:
    """Serve the project in ``root`` until interrupted (see the module docstring).

    Raises:
        ProjectError: no project in ``root``, or the ``labelstudio`` extra is not installed.
    """
    _require_server()
    import uvicorn

    live = LiveProject(root, settings)
    uvicorn.run(create_app(live), host=host, port=port, log_level=log_level)
