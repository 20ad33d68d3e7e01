"""Shared fixtures: databases, the fake ToAPIs and Discord servers, and the real bot wired to them."""

from __future__ import annotations

import os

import pytest

from bot.config import database_url_for_sqlalchemy
from bot.store import Store

pytest_plugins = ["tests.rig"]

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "").strip()


def pytest_report_header(config: pytest.Config) -> list[str]:
    from tests.fakes.discord_spec_source import describe_validation

    lines = []
    if POSTGRES_URL:
        lines.append("database: SQLite and PostgreSQL (TEST_DATABASE_URL)")
    else:
        lines.append(
            "database: SQLite only — set TEST_DATABASE_URL to also run every database test on PostgreSQL"
        )
    lines.append(describe_validation())
    return lines


def _database_params() -> list[object]:
    params: list[object] = [pytest.param("sqlite", id="sqlite")]
    if POSTGRES_URL:
        params.append(pytest.param("postgres", id="postgres", marks=pytest.mark.postgres))
    return params


@pytest.fixture(params=_database_params())
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A DATABASE_URL as a deployer writes it: a fresh SQLite file, or a fresh PostgreSQL schema state."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'imagine.db'}"
    return POSTGRES_URL


@pytest.fixture
async def store(database_url: str):
    """A migrated, empty store on each database the run covers."""
    db = Store.open(database_url_for_sqlalchemy(database_url))
    if database_url.startswith(("postgres://", "postgresql")):
        await _drop_all(db)
    await db.migrate()
    yield db
    await db.close()


async def _drop_all(db: Store) -> None:
    """PostgreSQL is shared between tests: start each from an empty public schema."""
    import sqlalchemy as sa

    async with db.engine.begin() as conn:
        await conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        await conn.execute(sa.text("CREATE SCHEMA public"))
