"""config.yaml: the shipped file validates, typos are caught by path, secrets come from the environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import load_config, parse_config, require_secret
from bot.errors import ConfigError
from tests.conftest import REPO


def test_the_shipped_config_is_valid_and_keeps_the_documented_names() -> None:
    config = load_config(REPO / "config.yaml")
    assert config.bot.db == "atelier.db"
    assert config.adapters.discord.token_env == "DISCORD_TOKEN"
    assert config.adapters.slack.mode == "socket"
    assert (config.backends.text.type, config.backends.image.type, config.backends.music.type) == (
        "transformers", "procedural", "algorithmic"
    )
    assert config.backends.text.model == "Qwen/Qwen2.5-0.5B-Instruct" and config.backends.text.fallback.type == "markov"  # type: ignore[union-attr]
    assert config.jobs.per_user_pending == 2 and config.jobs.image.slots == 1
    assert config.moderation.cooldown.blocks == 3
    assert config.serve.port == 8000


def test_unknown_key_is_rejected_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("adapters:\n  discord:\n    tokn_env: X\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"{path}: adapters.discord.tokn_env: unknown key" in str(caught.value)


@pytest.mark.parametrize(
    ("moderation", "path"),
    [
        ({"cooldwn": {"blocks": 3}}, "moderation.cooldwn"),
        ({"cooldown": {"block": 3}}, "moderation.cooldown.block"),
        ({"servers": {"discord:1234": {"strict": True}}}, "moderation.servers.discord:1234.strict"),
    ],
)
def test_unknown_moderation_keys_are_rejected(moderation: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError, match=f"{re.escape(path)}: unknown key"):
        parse_config({"moderation": moderation})


def test_a_server_key_that_names_no_server_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"'1234' is not a server; write \"discord:<guild id>\""):
        parse_config({"moderation": {"servers": {"1234": {"strict_public_figures": True}}}})
    servers = {"discord:1234": {"allow_nsfw": True}, "slack:T0123ABCD": {"strict_public_figures": True}}
    assert set(parse_config({"moderation": {"servers": servers}}).moderation.servers) == set(servers)


def test_bad_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"adapters\.slack\.mode: Input should be 'socket' or 'http'"):
        parse_config({"adapters": {"slack": {"mode": "carrier-pigeon"}}})


def test_env_references_are_expanded_and_missing_ones_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATELIER_DB", "/tmp/from-env.db")
    assert parse_config({"bot": {"db": "${ATELIER_DB}"}}).bot.db == "/tmp/from-env.db"
    monkeypatch.delenv("ATELIER_DB")
    with pytest.raises(ConfigError, match="bot.db: environment variable ATELIER_DB is not set"):
        parse_config({"bot": {"db": "${ATELIER_DB}"}})


def test_missing_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"DISCORD_TOKEN is not set: export it .*adapters\.discord\.token_env"):
        require_secret("DISCORD_TOKEN", "adapters.discord.token_env")
    monkeypatch.setenv("DISCORD_TOKEN", "abc.def")
    assert require_secret("DISCORD_TOKEN", "adapters.discord.token_env") == "abc.def"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bot: [unclosed", "not valid YAML at line 1"),
        ("- a\n- b\n", "the top level must be a mapping"),
    ],
)
def test_broken_files_are_explained(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file; pass --config"):
        load_config(tmp_path / "nope.yaml")


def test_an_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("")
    assert load_config(path).backends.text.type == "markov"
