"""The web console: static HTML, CSS and JavaScript modules of our own, served by the control plane at
`/` (the page) and `/console/...` (its modules), built only on the public API and `/ws`.

Nothing is built or downloaded: the files in `static/` are what the browser runs. Every answer carries
a strict Content-Security-Policy (scripts and styles from this origin only, no inline code, no framing),
so that even a string that slipped into the page as markup could not run.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"

# 'self' covers same-origin ws:/wss: in the browsers the console supports (CSP Level 3).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'; object-src 'none'"
)
HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    # The files change with the package: always revalidate (they are small, and ETags make it cheap).
    "cache-control": "no-cache",
}
_RAW_HEADERS = [(k.encode(), v.encode()) for k, v in HEADERS.items()]


class WithHeaders:
    """Adds the console's security headers to every answer of the app it wraps (404s too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in HEADERS_BYTES]
                message["headers"] = [*kept, *_RAW_HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except HTTPException as exc:  # StaticFiles' 404 and 405, answered here to carry the headers
            answer = PlainTextResponse(exc.detail, status_code=exc.status_code, headers=HEADERS)
            await answer(scope, receive, send)


HEADERS_BYTES = frozenset(k.encode() for k in HEADERS)


def install(app: FastAPI) -> None:
    """Serve the console: the page at `/`, its modules under `/console/`."""
    app.mount("/console", WithHeaders(StaticFiles(directory=STATIC)), name="console")

    @app.get("/", include_in_schema=False)
    async def console_page() -> Response:
        return FileResponse(STATIC / "index.html", headers=HEADERS)
