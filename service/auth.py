"""Bearer-token authentication and request-size limits of the REST API.

One static token from the settings guards every mutating endpoint, and the read endpoints
too when ``read_token_required`` is set. Without a configured token (only allowed on the
loopback interface) the API is open. A missing token is 401, a wrong one 403; tokens are
compared in constant time. :class:`RequestGuard` checks the token before any body is read and
bounds the body's size; the dependencies below repeat the check per route and declare the
scheme in the OpenAPI document.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.deps import SettingsDep
from service.settings import Settings

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="BearerToken",
    description="The API token of the service (`BAI_SWEEP_API_TOKEN`).",
)

CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def check_token(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Raise 401 / 403 unless ``credentials`` carry the configured token (if one is set)."""
    if settings.api_token is None:
        return
    if credentials is None or not credentials.credentials:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    expected = settings.api_token.get_secret_value().encode()
    if not secrets.compare_digest(credentials.credentials.encode(), expected):
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="invalid bearer token")


async def require_write_access(settings: SettingsDep, credentials: CredentialsDep) -> None:
    """Dependency of mutating endpoints: the token is always required when configured."""
    check_token(settings, credentials)


async def require_read_access(settings: SettingsDep, credentials: CredentialsDep) -> None:
    """Dependency of read endpoints: the token is required only if ``read_token_required``."""
    if settings.read_token_required:
        check_token(settings, credentials)


#: Paths readable without a token even when ``read_token_required`` (liveness and API docs).
PUBLIC_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _BodyTooLarge(Exception):
    pass


class RequestGuard:
    """ASGI middleware: authenticate from the headers, then bound the body as it streams.

    FastAPI reads and parses a request body before any dependency runs, so a dependency-based
    token check would come after an unauthenticated client's body was read whole. This guard
    answers 401/403 from the headers alone and 413 as soon as a body passes ``max_body_bytes``
    (announced by ``Content-Length`` or counted while it streams); a body within the limit is
    buffered (at most ``max_body_bytes``) and replayed to the application.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method not in _SAFE_METHODS or (
            self.settings.read_token_required and scope["path"] not in PUBLIC_PATHS
        ):
            try:
                check_token(self.settings, _bearer(scope))
            except HTTPException as exc:
                await _reply(send, exc.status_code, exc.detail, exc.headers)
                return
        if method in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _reply(send, 413, _too_large(limit))
            return
        try:
            body = await _read_body(receive, limit)
        except _BodyTooLarge:
            await _reply(send, 413, _too_large(limit))
            return
        await self.app(scope, _replay(body, receive), send)


def _bearer(scope: Scope) -> HTTPAuthorizationCredentials | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return HTTPAuthorizationCredentials(scheme="Bearer", credentials=token.strip())
            return None
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> str:
    return f"request body larger than {limit} bytes (BAI_SWEEP_MAX_BODY_BYTES)"


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(
    send: Send, status_code: int, detail: str, headers: Mapping[str, str] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((key.lower().encode(), value.encode()) for key, value in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status_code, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
