"""What routes depend on, as `Annotated` aliases: a signature reads as what the route needs."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.account_workflows import AccountWorkflows
from api.answer_cache import AnswerCache
from core.config import Settings
from domain.catalog import Catalog
from domain.stripe_events import ACCOUNT_ID_PATTERN

bearer = HTTPBearer(auto_error=False)

# The dependencies that only read app state or compare strings are `async def`: FastAPI runs a
# plain `def` dependency in the threadpool, a thread hop per dependency on every request.
# `get_session` stays sync: closing the session returns its connection (blocking I/O).


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_answer_cache(request: Request) -> AnswerCache:
    cache: AnswerCache = request.app.state.answer_cache
    return cache


async def get_session_factory(request: Request) -> sessionmaker[Session]:
    sessions: sessionmaker[Session] = request.app.state.session_factory
    return sessions


def get_session(
    sessions: Annotated[sessionmaker[Session], Depends(get_session_factory)],
) -> Iterator[Session]:
    with sessions() as session:
        yield session


async def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


async def get_account_workflows(request: Request) -> AccountWorkflows:
    workflows: AccountWorkflows = request.app.state.account_workflows
    return workflows


SettingsDep = Annotated[Settings, Depends(get_settings)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
EngineDep = Annotated[Engine, Depends(get_engine)]
AnswerCacheDep = Annotated[AnswerCache, Depends(get_answer_cache)]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]
SessionDep = Annotated[Session, Depends(get_session)]
AccountWorkflowsDep = Annotated[AccountWorkflows, Depends(get_account_workflows)]
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _require_token(credentials: HTTPAuthorizationCredentials | None, expected: str) -> None:
    # Constant-time comparison: the token must not leak through response timing.
    if credentials is None or not secrets.compare_digest(
        credentials.credentials.encode(), expected.encode()
    ):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_app_token(credentials: CredentialsDep, settings: SettingsDep) -> None:
    _require_token(credentials, settings.app_api_token)


async def require_admin_token(credentials: CredentialsDep, settings: SettingsDep) -> None:
    _require_token(credentials, settings.admin_api_token)


AppTokenDep = Annotated[None, Depends(require_app_token)]
AdminTokenDep = Annotated[None, Depends(require_admin_token)]
AccountIdPath = Annotated[str, Path(pattern=ACCOUNT_ID_PATTERN)]
