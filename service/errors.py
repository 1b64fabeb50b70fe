"""Exception handlers: our domain errors and bad requests become JSON ``{"detail": ...}``.

Anything the caller got wrong is a 4xx with a readable one-line ``detail``; only failures on
our side (an unreachable database, a bug) are 5xx.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from evaluators.exceptions import EvaluatorError
from storage.exceptions import (
    ConflictError,
    DatabaseUnavailableError,
    InvalidArgumentError,
    NotFoundError,
    StorageError,
)
from sweeps.exceptions import SweepsError

logger = logging.getLogger(__name__)

#: Most specific first: the first matching class decides the status code.
ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (NotFoundError, status.HTTP_404_NOT_FOUND),
    (ConflictError, status.HTTP_409_CONFLICT),
    (InvalidArgumentError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (DatabaseUnavailableError, status.HTTP_503_SERVICE_UNAVAILABLE),
    (StorageError, status.HTTP_500_INTERNAL_SERVER_ERROR),
    (SweepsError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (EvaluatorError, status.HTTP_422_UNPROCESSABLE_CONTENT),
)


def status_for(exc: Exception) -> int:
    """The HTTP status code an error of ours maps to."""
    for error_type, code in ERROR_STATUS:
        if isinstance(exc, error_type):
            return code
    return status.HTTP_500_INTERNAL_SERVER_ERROR


def _location(loc: tuple[object, ...]) -> str:
    parts = [str(part) for part in loc if not str(part).startswith("function-")]
    if parts and parts[0] == "body":
        return ".".join(parts[1:])
    if parts and parts[0] in ("query", "path", "header"):
        return f"{parts[0]} {'.'.join(parts[1:])}".strip()
    return ".".join(parts)


def describe_validation_errors(errors: list[dict[str, Any]]) -> str:
    """One readable line from pydantic's error list: ``where: message; ...``."""
    messages = []
    for error in errors:
        loc: tuple[Any, ...] = tuple(error.get("loc") or ())
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", message)
            at = loc[-1] if len(loc) > 1 else "?"
            messages.append(f"malformed JSON at character {at}: {reason}")
            continue
        where = _location(tuple(loc))
        messages.append(f"{where}: {message}" if where else message)
    return "; ".join(messages) or "invalid request"


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    code = status_for(exc)
    if code >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc)
    return JSONResponse(status_code=code, content={"detail": str(exc)})


async def _request_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors(), exclude={"input", "url"})
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": describe_validation_errors(errors), "errors": errors},
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        content={"detail": "internal server error"},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    for error_type in (StorageError, SweepsError, EvaluatorError):
        app.add_exception_handler(error_type, _domain_error)
    app.add_exception_handler(Exception, _unexpected_error)
