"""The command line: clear one-line errors for misconfiguration, secrets never echoed."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import parse_config
from bot.logs import RedactSecrets, secret_env_names


def run_bot(tmp_path: Path, *args: str, config: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(config)
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "SLACK"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**clean_env, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_run_with_no_adapter_enabled_says_what_to_do(tmp_path: Path) -> None:
    result = run_bot(tmp_path, "run")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "atelier: no adapter is enabled: set adapters.discord.enabled or adapters.slack.enabled to true "
        "in config.yaml (or try `python -m bot chat` in this terminal)."
    )


@pytest.mark.parametrize(
    ("config", "variable"),
    [
        ("adapters: {discord: {enabled: true}}", "DISCORD_TOKEN"),
        ("adapters: {slack: {enabled: true}}", "SLACK_BOT_TOKEN"),
        ("adapters: {slack: {enabled: true, mode: http, bot_token_env: MY_BOT}}", "MY_BOT"),
    ],
)
def test_run_names_the_missing_secret(tmp_path: Path, config: str, variable: str) -> None:
    result = run_bot(tmp_path, "run", config=config)
    assert result.returncode == 2
    assert f"{variable} is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_slack_http_mode_needs_the_signing_secret(tmp_path: Path) -> None:
    result = run_bot(tmp_path, "run", config="adapters: {slack: {enabled: true, mode: http}}", env={"SLACK_BOT_TOKEN": "xoxb-123456789"})
    assert "SLACK_SIGNING_SECRET is not set" in result.stderr
    assert "xoxb-123456789" not in result.stderr


async def test_a_refused_slack_token_is_one_line_without_the_token(tmp_path: Path) -> None:
    from tests.fake_slack import REVOKED_TOKEN, FakeSlack

    fake = FakeSlack()
    await fake.start()
    try:
        config = f"adapters: {{slack: {{enabled: true, mode: socket, api_base_url: '{fake.api_base_url}'}}}}\nbot: {{db: {tmp_path / 'a.db'}}}"
        env = {"SLACK_BOT_TOKEN": REVOKED_TOKEN, "SLACK_APP_TOKEN": "xapp-1-abc"}
        result = await asyncio.to_thread(run_bot, tmp_path, "run", config=config, env=env)
    finally:
        await fake.stop()
    assert result.returncode == 2, result.stderr
    assert "atelier: Slack refused the bot token in SLACK_BOT_TOKEN (invalid_auth)" in result.stderr
    assert REVOKED_TOKEN not in result.stderr and "Traceback" not in result.stderr


def test_a_config_typo_stops_start_up_with_the_keys_path(tmp_path: Path) -> None:
    result = run_bot(tmp_path, "chat", config="bot:\n  persnoa: hi\n")
    assert result.returncode == 2
    assert "bot.persnoa: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def log_as_the_bot_does(message: str, *args: object) -> None:
    """Log one warning through the handler `setup_logging` installs, then put the root logger back."""
    from bot.logs import setup_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging(parse_config({}), "INFO")
        logging.getLogger("bot.test").warning(message, *args)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_setup_logging_masks_configured_secrets(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-0000-very-secret")
    log_as_the_bot_does("token was %s", "xoxb-0000-very-secret")
    err = capsys.readouterr().err
    assert "token was [redacted]" in err and "very-secret" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "."], "cannot open the store .: it is a folder"),
        (["--db", "not-sqlite.db"], "(file is not a database)"),
        (["--log-level", "loud"], "invalid choice: 'LOUD'"),
    ],
)
def test_start_up_problems_are_one_line_not_tracebacks(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "not-sqlite.db").write_text("hello")
    result = run_bot(tmp_path, "chat", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unquoted_numeric_ids_are_accepted() -> None:
    config = parse_config({"adapters": {"discord": {"log_channel": 123456789012345678, "allow": {"channels": [42]}}}})
    assert config.adapters.discord.log_channel == "123456789012345678"
    assert config.adapters.discord.allow.channels == ["42"]


def test_secrets_are_masked_in_logs(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "MTIzNDU2Nzg5.super.secret")
    config = parse_config({"backends": {"text": {"type": "openai", "api_key_env": "REMOTE_KEY", "fallback": {"type": "markov"}}}})
    assert "REMOTE_KEY" in secret_env_names(config)
    assert "ATELIER_DB_PASSWORD" in secret_env_names(parse_config({"bot": {"db_password_env": "ATELIER_DB_PASSWORD"}}))
    logger = logging.getLogger("test.secrets")
    logger.addFilter(RedactSecrets([os.environ["DISCORD_TOKEN"]]))
    with caplog.at_level(logging.INFO, logger="test.secrets"):
        logger.info("connecting with %s", "MTIzNDU2Nzg5.super.secret")
        try:
            raise RuntimeError("401 for token MTIzNDU2Nzg5.super.secret")
        except RuntimeError:
            logger.exception("login failed")
    assert "MTIzNDU2Nzg5.super.secret" not in caplog.text
    assert "connecting with [redacted]" in caplog.text


def test_serve_refuses_to_listen_beyond_loopback_without_a_key(tmp_path: Path) -> None:
    result = run_bot(tmp_path, "serve", "--host", "0.0.0.0", config="backends: {text: {type: markov}}")
    assert result.returncode == 2
    assert "ATELIER_API_KEY is not set" in result.stderr and "Traceback" not in result.stderr


def test_serve_refuses_a_key_short_enough_to_guess(tmp_path: Path) -> None:
    result = run_bot(tmp_path, "serve", "--host", "0.0.0.0", config="backends: {text: {type: markov}}", env={"ATELIER_API_KEY": "hunter2"})
    assert result.returncode == 2
    assert "ATELIER_API_KEY is 7 characters; use at least 16" in result.stderr and "hunter2" not in result.stderr


def test_short_secrets_are_masked_and_a_client_newline_cannot_forge_a_log_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ATELIER_API_KEY", "s3cr3t7")
    log_as_the_bot_does("bad request from %s", "x\n2026-12-07 ERROR bot.core: s3cr3t7 leaked")
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "x\\n2026-12-07 ERROR" in err and "s3cr3t7" not in err


async def test_serve_starts_and_answers_health(tmp_path: Path) -> None:
    import socket

    import aiohttp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "config.yaml").write_text("backends: {text: {type: markov}}\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", "--config", str(tmp_path / "config.yaml"), "--port", str(port),
        cwd=tmp_path, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        while b"serving on" not in (line := await asyncio.wait_for(process.stderr.readline(), 60)):
            assert line, "serve exited before listening"
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/health") as response:
            assert response.status == 200 and (await response.json())["models"]["text"] == "markov"
    finally:
        process.terminate()
        await process.wait()


def test_a_db_override_with_a_password_is_refused_without_echoing_it(tmp_path: Path) -> None:
    result = run_bot(tmp_path, "chat", "--db", "postgresql://atelier:hunter2secret@db/atelier")
    assert result.returncode == 2 and "hunter2secret" not in result.stderr + result.stdout
    assert "db_password_env" in result.stderr
