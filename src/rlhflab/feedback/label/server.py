"""The labelling web app: a FastAPI application over a :class:`LabelStore`.

Security model:

- Every API request carries ``Authorization: Bearer <token>``; a missing or unknown token is
  answered 401. Tokens are created by ``rlhflab label add-labeller`` and stored hashed.
- Cross-site requests: the token is never a cookie, so a page on another site cannot make the
  browser send it; in addition, state-changing requests must be ``application/json`` (which a
  cross-site form cannot send without a CORS preflight, which this server never grants) and,
  when the browser sends an ``Origin`` header, it must be this server's own origin (403).
- Model text reaches the page only as JSON and is inserted with ``textContent``: it is shown
  as text, never parsed as HTML. The page's Content-Security-Policy allows no inline script.
- Clips (videos of trajectory segments) are fetched with the token like every API call and played from
  blob URLs (``media-src 'self' blob:``); a video is given only to a labeller its query was served to.
- Request bodies over ``max_body`` bytes are refused (413); malformed ones (not JSON, not UTF-8,
  NaN or Infinity, numbers out of range, objects or lists where a string or number belongs) get
  400 or 422 with the reason. Every response, refusals and errors included, carries the security
  headers, and any error leaves the server serving.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from rlhflab.feedback.label.clips import clip_video
from rlhflab.feedback.label.store import LabelError, Labeller, LabelStore

_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; media-src 'self' blob:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class AnswerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query_id: int = Field(ge=1, le=2**63 - 1)  # SQLite's INTEGER
    choice: Literal["a", "b", "tie", "skip"]


class _JSON(JSONResponse):
    """JSON that is always valid: ASCII (a string holding an unpaired surrogate is escaped) and no NaN."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _asset(name: str) -> str:
    return resources.files("rlhflab.feedback.label").joinpath(name).read_text(encoding="utf-8")


def create_app(run_dir: str | Path, guidelines: str = "", max_body: int = 16_384) -> FastAPI:
    store = LabelStore(run_dir)
    app = FastAPI(title="rlhflab labelling", docs_url=None, redoc_url=None, openapi_url=None)
    page, script, style = _asset("page.html"), _asset("app.js"), _asset("app.css")

    def refuse(status: int, detail: str) -> Response:
        return _JSON({"detail": detail}, status_code=status, headers=_SECURITY_HEADERS)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.method not in ("GET", "HEAD"):
            length = request.headers.get("content-length")
            if length is None or not (length.isascii() and length.isdigit()):
                return refuse(411, "a Content-Length header is required")
            if int(length) > max_body:
                return refuse(413, f"request body of {length} bytes; the limit is {max_body}")
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return refuse(415, "send the body as application/json")
            origin = request.headers.get("origin")
            if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
                return refuse(403, f"cross-site request from {origin} refused")
        response = await call_next(request)
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    def labeller(authorization: str | None = Header(default=None)) -> Labeller:
        scheme, _, token = (authorization or "").partition(" ")
        who = store.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if who is None:
            raise HTTPException(
                401,
                "a valid access token is required (Authorization: Bearer <token>; see rlhflab label add-labeller)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return who

    @app.exception_handler(LabelError)
    async def label_error(request: Request, exc: LabelError):
        return _JSON({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # FastAPI's own answer echoes the input, which may be NaN or hold an unpaired surrogate: not JSON
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return _JSON({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        # a bug: the server still answers with its headers (and the error is still logged)
        return _JSON({"detail": "internal error"}, status_code=500, headers=_SECURITY_HEADERS)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/app.js")
    def app_js() -> Response:
        return Response(script, media_type="text/javascript")

    @app.get("/app.css")
    def app_css() -> Response:
        return Response(style, media_type="text/css")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/api/guidelines", response_class=PlainTextResponse)
    def get_guidelines(who: Labeller = Depends(labeller)) -> str:
        return guidelines

    @app.get("/api/next")
    def next_query(who: Labeller = Depends(labeller)) -> dict:
        return {"labeller": who.name, "query": store.next_query(who), "progress": store.progress(who)}

    @app.get("/api/clip/{query_id}/{side}")
    def clip(
        query_id: int = PathParam(ge=1, le=2**63 - 1), side: str = "a", who: Labeller = Depends(labeller)
    ) -> Response:
        video, mime = clip_video(store, who, query_id, side)
        return Response(video, media_type=mime)

    @app.post("/api/answer")
    def answer(body: AnswerBody, who: Labeller = Depends(labeller)) -> dict:
        answer_id = store.answer(who, body.query_id, body.choice)
        return {"answer_id": answer_id, "query_id": body.query_id, "choice": body.choice}

    @app.post("/api/undo")
    def undo(who: Labeller = Depends(labeller)) -> dict:
        query = store.undo(who)
        if query is None:
            raise HTTPException(409, "nothing to undo: you have no answers")
        return {"query": query, "progress": store.progress(who)}

    return app
