"""FastAPI dependencies as ``Annotated`` aliases: the app's settings and database engine."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from service.cache import ResponseCache
from service.settings import Settings


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


async def get_engine(request: Request) -> Engine:
    """The database engine of the app (one per process, pooled)."""
    return request.app.state.engine


async def get_response_cache(request: Request) -> ResponseCache:
    """The app's cache of hot read responses."""
    return request.app.state.response_cache


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
CacheDep = Annotated[ResponseCache, Depends(get_response_cache)]
