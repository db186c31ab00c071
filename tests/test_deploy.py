"""The deployment files (docker-compose.yml, deploy/): every config they mount is valid, every path they copy exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bot.config import load_config

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_each_bot_process_gets_its_own_shard_on_the_shared_store(monkeypatch: pytest.MonkeyPatch) -> None:
    bots = {name: service for name, service in COMPOSE["services"].items() if name.startswith("bot-")}
    assert len(bots) == 2
    shards = []
    for service in bots.values():
        monkeypatch.setenv("ATELIER_SHARD", service["environment"]["ATELIER_SHARD"])
        config = load_config(REPO / "deploy" / "config.scale.yaml")
        assert "@postgres:5432/" in config.bot.db and config.bot.db_password_env == "ATELIER_DB_PASSWORD"
        assert config.adapters.slack.mode == "http"
        shards.append(tuple(config.adapters.discord.shards.ids))  # type: ignore[union-attr]
    assert sorted(shards) == [(0,), (1,)]


def test_the_load_balancer_and_the_gpu_host_point_at_real_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATELIER_SHARD", "0")
    upstreams = re.findall(r"server (bot-\d+):3000", (REPO / "deploy" / "nginx.conf").read_text())
    assert sorted(upstreams) == sorted(name for name in COMPOSE["services"] if name.startswith("bot-"))
    host = load_config(REPO / "deploy" / "config.gpu-host.yaml")
    assert host.serve.host == "0.0.0.0" and host.serve.api_key_env == "ATELIER_API_KEY"
    assert "gpu-host:8000" in str(load_config(REPO / "deploy" / "config.scale.yaml").backends.remote.base_url)  # type: ignore[union-attr]


def test_the_image_copies_only_what_exists() -> None:
    copied = re.findall(r"^COPY (.+) \S+$", (REPO / "deploy" / "Dockerfile").read_text(), re.M)
    for sources in copied:
        for source in sources.split():
            assert (REPO / source).exists(), source
