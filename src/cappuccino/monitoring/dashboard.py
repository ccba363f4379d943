"""The dashboard: one page that shows the snapshot with plots and refreshes itself, as a
small ASGI app (starlette, served by uvicorn), or as one static HTML file.

Why starlette + uvicorn: both are already installed with ``mlflow-skinny`` (its server
needs them), starlette is a few thousand lines with no further dependencies, and uvicorn is
the reference ASGI server; a page with three GET routes needs nothing bigger.

Routes (GET only; the app has no control that changes anything):

- ``/``: the page, with the current snapshot embedded (it works before its first refresh);
- ``/api/status``: the snapshot as JSON (:meth:`Snapshot.to_dict`);
- ``/api/view``: what the page's script draws (content HTML, figures, status);
- ``/static/plotly.min.js``: plotly.js, from the installed plotly package (no network).

It binds to 127.0.0.1 unless told otherwise; on any other address every request needs the
token from :data:`TOKEN_ENV` (``Authorization: Bearer <token>`` or ``?token=``). Snapshots
are built at most every ``cache_s`` seconds, however often the page is polled.
"""

from __future__ import annotations

import hmac
import json
import os
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from cappuccino.monitoring.snapshot import Monitor, Snapshot
from cappuccino.monitoring.views import view_doc
from cappuccino.reporting.pages import render_page
from cappuccino.utils.io import atomic_write_bytes

TOKEN_ENV = "CAPPUCCINO_DASHBOARD_TOKEN"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
MIN_TOKEN_CHARS = 16


@lru_cache(maxsize=1)
def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def _json_in_html(doc: Any) -> str:
    """JSON that is safe inside a ``<script>`` element."""
    return (json.dumps(doc, default=str, allow_nan=False).replace("<", "\\u003c")
            .replace(">", "\\u003e").replace("&", "\\u0026"))  # fmt: skip


def page(snap: Snapshot, *, live: bool, refresh_s: float = 5.0) -> str:
    """The dashboard page. ``live``: it loads plotly.js from the server and refreshes every
    ``refresh_s`` seconds; otherwise plotly.js is embedded and the page is a snapshot that
    works offline."""
    doc = _clean(view_doc(snap.to_dict()))
    note = (f"Live: refreshes every {refresh_s:g} s." if live else
            "Static snapshot (cappuccino dashboard --html): it does not refresh.")  # fmt: skip
    return render_page(
        "dashboard.html.j2", title="Cappuccino dashboard", initial=_json_in_html(doc),
        live=live, refresh_ms=int(refresh_s * 1000), mode_note=note,
        plotly_inline=None if live else plotly_js(),
    )  # fmt: skip


def _clean(doc: Any) -> Any:
    """NaN and infinities as null (JSON has neither)."""
    if isinstance(doc, float):
        return doc if doc == doc and abs(doc) != float("inf") else None
    if isinstance(doc, dict):
        return {k: _clean(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [_clean(v) for v in doc]
    return doc


def write_html(snap: Snapshot, path: Path) -> Path:
    """The static page, written atomically."""
    atomic_write_bytes(Path(path), page(snap, live=False).encode())
    return Path(path)


def check_bind(host: str) -> str | None:
    """The token a server on ``host`` must require (None on loopback); a ValueError when
    ``host`` is not loopback and :data:`TOKEN_ENV` holds no token long enough."""
    if host in LOOPBACK:
        return None
    token = os.environ.get(TOKEN_ENV, "")
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(
            f"--host: {host} exposes the dashboard beyond this machine; set {TOKEN_ENV} to a "
            f"token of {MIN_TOKEN_CHARS} characters or more (got "
            f"{'none' if not token else f'{len(token)} characters'})"
        )
    return token


class _Cached:
    """One snapshot at a time, reused for ``cache_s`` seconds."""

    def __init__(self, monitor: Monitor, cache_s: float) -> None:
        self.monitor, self.cache_s = monitor, cache_s
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._at = 0.0
        self.built = 0

    def get(self) -> Snapshot:
        with self._lock:
            if self._snap is None or time.monotonic() - self._at >= self.cache_s:
                self._snap = self.monitor.snapshot()
                self._at = time.monotonic()
                self.built += 1
            return self._snap


def make_app(
    monitor: Monitor, *, token: str | None = None, refresh_s: float = 5.0, cache_s: float = 0.5
) -> Any:
    """The ASGI app over ``monitor``'s sources."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    cached = _Cached(monitor, cache_s)

    def allowed(request: Request) -> bool:
        if token is None:
            return True
        given = request.query_params.get("token", "")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:]
        return hmac.compare_digest(given.encode(), token.encode())

    def guarded(fn: Any) -> Any:
        def endpoint(request: Request) -> Response:
            if not allowed(request):
                return PlainTextResponse(f"401: a token is required ({TOKEN_ENV})", 401)
            return fn(request)  # type: ignore[no-any-return]

        return endpoint

    def index(_: Request) -> Response:
        return HTMLResponse(page(cached.get(), live=True, refresh_s=refresh_s),
                            headers={"Cache-Control": "no-store"})  # fmt: skip

    def api_status(_: Request) -> Response:
        return JSONResponse(_clean(cached.get().to_dict()), headers={"Cache-Control": "no-store"})

    def api_view(_: Request) -> Response:
        return JSONResponse(_clean(view_doc(cached.get().to_dict())),
                            headers={"Cache-Control": "no-store"})  # fmt: skip

    def plotly(_: Request) -> Response:
        return Response(plotly_js(), media_type="application/javascript",
                        headers={"Cache-Control": "max-age=3600"})  # fmt: skip

    app = Starlette(routes=[
        Route("/", guarded(index), methods=["GET"]),
        Route("/api/status", guarded(api_status), methods=["GET"]),
        Route("/api/view", guarded(api_view), methods=["GET"]),
        Route("/static/plotly.min.js", guarded(plotly), methods=["GET"]),
    ])  # fmt: skip
    app.state.cached = cached
    return app


def serve(app: Any, host: str, port: int) -> None:
    """Run ``app`` until interrupted (uvicorn logs to stderr)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
