"""Logging set-up: one stderr handler whose filter masks every configured secret's value."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

from bot.config import Config


def secret_env_names(config: Config) -> list[str]:
    """Every environment variable the config names as holding a secret."""
    names = [
        config.adapters.discord.token_env,
        config.adapters.slack.bot_token_env,
        config.adapters.slack.app_token_env,
        config.adapters.slack.signing_secret_env,
        config.serve.api_key_env,
        *([config.bot.db_password_env] if config.bot.db_password_env else []),
    ]
    for backend in (config.backends.text, config.backends.image, config.backends.music, config.backends.remote):
        while backend is not None:
            if backend.api_key_env:
                names.append(backend.api_key_env)
            backend = backend.fallback
    return names


# A client's text in a message (a header, a name) must not start a new, real-looking log line.
CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in range(32) if code != 9} | {10: "\\n", 13: "\\r", 127: "\\x7f"}


class RedactSecrets(logging.Filter):
    """Replaces secret values in log records, including their arguments and tracebacks."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Every value, however short: a short secret is still a secret (the host refuses keys under 16 characters).
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, mask it, escape what could fake a log line, and drop the raw arguments."""
        record.msg = self._mask(record.getMessage()).translate(CONTROL_ESCAPES)
        record.args = None
        if self.secrets:
            if record.exc_info:
                record.exc_text = self._mask(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


# Libraries whose INFO lines describe their own start-up in every process, saying nothing an operator acts on.
CHATTY = ("procrastinate.blueprints", "procrastinate.periodic")


def setup_logging(config: Config, level: str) -> None:
    """Log to stderr at `level`, with every configured secret masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(os.environ.get(name, "") for name in secret_env_names(config)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in CHATTY:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
