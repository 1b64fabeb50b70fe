"""Bearer-token authentication of the REST API.

One static token from the settings guards every mutating endpoint, and the read endpoints
too when ``read_token_required`` is set. Without a configured token (only allowed on the
loopback interface) the API is open. A missing token is 401, a wrong one 403; tokens are
compared in constant time.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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
