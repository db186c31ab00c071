"""`python -m bot migrate --to URL`: a SQLite store copied whole into PostgreSQL, verified, and usable at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bot.messages import ConversationKey
from bot.store import ConversationStore

KEY = ConversationKey("discord", "g1", "c1", "")


def migrate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "config.yaml").write_text(f"bot: {{db: {tmp_path / 'atelier.db'}}}\n")
    return subprocess.run(
        [sys.executable, "-m", "bot", "migrate", "--config", str(tmp_path / "config.yaml"), *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=dict(os.environ), stdin=subprocess.DEVNULL,
    )  # fmt: skip


async def fill(path: Path) -> int:
    """A store with a row in every table; returns the id of its last message."""
    store = await ConversationStore.open(path)
    conversation = await store.conversation(KEY)
    await store.set_persona(KEY, "a pirate", "discord:1")
    last = 0
    for i in range(1200):  # more than one batch of the copy
        last = await store.add_turn(conversation.id, "user" if i % 2 == 0 else "assistant", f"turn {i}", "discord:1")
    await store.touch_user("discord:1", "Alice")
    await store.engine.execute("INSERT INTO settings (scope, key, value, set_by) VALUES ('g1', 'persona', 'x', 'discord:1')")
    await store.insert_job({"id": "j1", "kind": "image", "user_id": "discord:1", "conversation": str(KEY), "message_id": None,
                            "params": json.dumps({"prompt": "a fox"}), "status": "queued", "attempts": 0, "error": None,
                            "created_at": time.time()})  # fmt: skip
    await store.add_moderation_event({"at": time.time(), "user_id": "discord:1", "scope": "g1", "conversation": str(KEY),
                                      "kind": "image", "action": "block", "category": "sexual", "target": None, "score": 0.9,
                                      "reasons": "[]", "excerpt": None, "stage": "acts"})  # fmt: skip
    await store.claim_event("slack", "Ev1")
    await store.close()
    return last


async def test_a_sqlite_store_moves_to_postgresql_whole_and_goes_on_from_there(tmp_path: Path, postgres_url: str) -> None:
    last = await fill(tmp_path / "atelier.db")
    result = migrate(tmp_path, "--to", postgres_url)
    assert result.returncode == 0, result.stderr
    assert "1 users, 1 settings, 1 conversations, 1200 messages, 1 jobs, 1 moderation events, 1 answered events" in result.stdout
    assert "(counts verified)" in result.stdout and f"set bot.db: {postgres_url}" in result.stdout
    store = await ConversationStore.open(postgres_url)
    try:
        conversation = await store.conversation(KEY)
        assert conversation.persona == "a pirate"
        assert [turn.text for turn in await store.history(conversation.id, 2)] == ["turn 1199", "turn 1198"]
        assert await store.add_turn(conversation.id, "user", "after the move") > last  # new ids follow the copied ones
        assert [row["id"] for row in await store.unfinished_jobs()] == ["j1"]
        assert await store.recent_blocks("discord:1", time.time() - 60) == 1
    finally:
        await store.close()
    again = migrate(tmp_path, "--to", postgres_url)  # nothing is copied on top of a store in use
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "already holds users; migrate into an empty database" in again.stderr


def test_migrate_refuses_a_password_in_the_url_and_a_non_postgresql_target(tmp_path: Path) -> None:
    with_password = migrate(tmp_path, "--to", "postgresql://atelier:hunter2@db/atelier")
    assert with_password.returncode == 2 and "hunter2" not in with_password.stderr
    assert "pass --password-env" in with_password.stderr
    elsewhere = migrate(tmp_path, "--to", str(tmp_path / "other.db"))
    assert elsewhere.returncode == 2 and "must be a postgresql://" in elsewhere.stderr
    query_password = migrate(tmp_path, "--to", "postgresql://atelier@db/atelier?password=hunter2")
    assert query_password.returncode == 2 and "hunter2" not in query_password.stderr
