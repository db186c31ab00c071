"""Command line: `python -m bot run | chat | serve | models | migrate | backup | restore`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from bot.config import (
    BotSection,
    Config,
    ConfigError,
    default_config_path,
    load_config,
    require_secret,
)
from bot.errors import first_line
from bot.logs import setup_logging

if TYPE_CHECKING:
    from bot.ports import Adapter
    from bot.core import Bot

EXIT_CONFIG = 2
# torch's OpenMP threads spin for a while after each parallel step by default. On a busy machine those
# spins steal the cores from everyone else (the GPU host fell to a tenth of its speed next to other
# work); sleeping at once costs a short message's check about 2 ms and saves ~15% of its CPU.
# Set before torch is first imported (it is imported lazily, by the backends and moderation).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# How long a worker thread (moderation's text reading, sqlite) may hold the interpreter before the
# event loop gets it back. Python's 5 ms default is itself a 5 ms stall of every chat and heartbeat.
SWITCH_INTERVAL_S = 0.001


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Atelier: a generative bot for Discord and Slack.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,chat,serve,models,migrate,backup,restore}")
    for name, text in (
        ("run", "start every adapter enabled in the config"),
        ("chat", "chat in this terminal (or pipe one message per line)"),
        ("serve", "serve the configured models over HTTP (the GPU host)"),
        ("models", "list the configured models (cached, missing, size) or download them"),
        ("migrate", "copy the SQLite store into an empty PostgreSQL database (stop the bot first)"),
        ("backup", "copy the store to a new file (safe while the bot runs)"),
        ("restore", "replace the store with a backup (stop the bot first)"),
    ):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument("--config", metavar="PATH", help="config.yaml to use (default: ./config.yaml if present)")
        command.add_argument("--db", metavar="PATH", help="SQLite file or postgresql:// URL, overriding bot.db")
        command.add_argument(
            "--log-level", default=None, type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            help="how much to log on standard error (default WARNING; INFO for run)",
        )
        if name == "chat":
            command.add_argument("--output-dir", metavar="DIR", help="where generated files go, overriding bot.output_dir")
        if name in ("backup", "restore"):
            command.add_argument("file", metavar="FILE", help="the backup file to write" if name == "backup" else "the backup to restore")
        if name == "models":
            command.add_argument("action", choices=["list", "download"], help="list: what is configured and here; download: fetch it")
            command.add_argument("what", nargs="?", default="all", choices=["text", "image", "music", "all"],
                                 help="which kind's models to download (default: all)")  # fmt: skip
            command.add_argument("--to", metavar="DIR", help="download into DIR (one folder per model) instead of the model cache")
        if name == "migrate":
            command.add_argument("--to", metavar="URL", required=True, help="postgresql://user@host:port/database to copy into")
            command.add_argument("--password-env", metavar="VAR",
                                 help="variable holding the target's password (default: bot.db_password_env)")  # fmt: skip
        if name == "serve":
            command.add_argument("--host", help="address to bind, overriding serve.host")
            command.add_argument("--port", type=int, help="port to bind, overriding serve.port")
    return parser


def _load(args: argparse.Namespace) -> Config:
    config = load_config(default_config_path(args.config))
    overrides = {"db": args.db, "output_dir": getattr(args, "output_dir", None)}
    overrides = {key: value for key, value in overrides.items() if value}
    if not overrides:
        return config
    try:  # the same rules as the file's: a --db URL with a password is refused too
        section = BotSection.model_validate({**config.bot.model_dump(), **overrides})
    except ValidationError as error:
        raise ConfigError(f"--db: {error.errors()[0]['msg'].removeprefix('Value error, ')}.") from None
    return config.model_copy(update={"bot": section})


async def _start_bot(config: Config, load_in_background: bool = False) -> Bot:
    """Start the core, turning a store that cannot be opened into a one-line config error."""
    import sqlite3

    from bot.core import Bot
    from bot.store.engine import is_driver_error, is_postgres_url
    from bot.store.health import StoreRefused
    from bot.store.postgres import describe

    try:
        return await Bot.start(config, load_in_background=load_in_background)
    except StoreRefused as error:
        raise ConfigError(str(error)) from None
    except (sqlite3.Error, OSError, RuntimeError) as error:
        if is_postgres_url(config.bot.db):
            raise ConfigError(f"cannot use the PostgreSQL store {describe(config.bot.db)} ({error}).") from None
        raise ConfigError(
            f"cannot open the store {config.bot.db} ({error}); check bot.db or --db names a writable SQLite file."
        ) from None
    except Exception as error:
        if not is_driver_error(error):
            raise
        raise ConfigError(
            f"the PostgreSQL store {describe(config.bot.db)} refused to start ({first_line(error)}); "
            "check that its user may create tables."
        ) from None


async def _chat(config: Config) -> None:
    from adapters.console import ConsoleAdapter

    bot = await _start_bot(config)
    try:
        await ConsoleAdapter(output_dir=config.bot.output_dir).run(bot)
    finally:
        await bot.close()


def _check_run(config: Config) -> None:
    """Fail early, naming the variable, when an enabled adapter lacks a secret."""
    discord, slack = config.adapters.discord, config.adapters.slack
    if not discord.enabled and not slack.enabled:
        raise ConfigError(
            "no adapter is enabled: set adapters.discord.enabled or adapters.slack.enabled to true "
            "in config.yaml (or try `python -m bot chat` in this terminal)."
        )
    if discord.enabled:
        require_secret(discord.token_env, "adapters.discord.token_env")
    if slack.enabled:
        require_secret(slack.bot_token_env, "adapters.slack.bot_token_env")
        if slack.mode == "socket":
            require_secret(slack.app_token_env, "adapters.slack.app_token_env")
        else:
            require_secret(slack.signing_secret_env, "adapters.slack.signing_secret_env")


def _adapters(config: Config) -> list[Adapter]:
    """The enabled platform adapters, built with their secrets from the environment."""
    adapters: list[Adapter] = []
    discord_settings, slack_settings = config.adapters.discord, config.adapters.slack
    if discord_settings.enabled:
        from adapters.discord_adapter import DiscordAdapter

        adapters.append(DiscordAdapter(discord_settings, require_secret(discord_settings.token_env, "adapters.discord.token_env")))
    if slack_settings.enabled:
        from adapters.slack_adapter import SlackAdapter

        socket = slack_settings.mode == "socket"
        adapters.append(SlackAdapter(
            slack_settings,
            require_secret(slack_settings.bot_token_env, "adapters.slack.bot_token_env"),
            app_token=require_secret(slack_settings.app_token_env, "adapters.slack.app_token_env") if socket else None,
            signing_secret=None if socket else require_secret(slack_settings.signing_secret_env, "adapters.slack.signing_secret_env"),
        ))  # fmt: skip
    return adapters


def _login_error(error: BaseException, config: Config) -> ConfigError | None:
    """A one-line explanation for a platform refusing our credentials, or None for other failures."""
    import discord

    if isinstance(error, discord.LoginFailure):
        return ConfigError(
            f"Discord refused the token in {config.adapters.discord.token_env}; copy the bot token again from the "
            "Developer Portal (Bot → Reset Token)."
        )
    if isinstance(error, discord.PrivilegedIntentsRequired):
        return ConfigError(
            "Discord refused the Message Content intent; enable it in the Developer Portal (Bot → Privileged Gateway "
            "Intents → Message Content Intent)."
        )
    return error if isinstance(error, ConfigError) else None


async def _run(config: Config) -> None:
    """Start the core and every enabled adapter; stop them all when one ends or on Ctrl-C."""
    # The platforms connect while the models load; early requests are told it is still starting.
    bot = await _start_bot(config, load_in_background=True)
    adapters = _adapters(config)
    tasks = [asyncio.create_task(adapter.run(bot), name=f"adapter-{adapter.name}") for adapter in adapters]
    # SIGTERM (docker stop, systemd) stops as cleanly as Ctrl-C: jobs go back to the store or the shared queue.
    terminated = asyncio.Event()
    waiting = asyncio.create_task(terminated.wait(), name="sigterm")
    try:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # a loop without signal support: Ctrl-C only
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminated.set)
        done, _ = await asyncio.wait([*tasks, waiting], return_when=asyncio.FIRST_COMPLETED)
        for task in done - {waiting}:
            error = task.exception()
            if error is not None:
                explained = _login_error(error, config)
                raise explained if explained is not None else error
    finally:
        waiting.cancel()
        # Jobs stop first, while the platforms can still tell their users; then the platforms, then the store.
        try:
            await bot.jobs.stop()
        except Exception:  # the platforms and the store must still close
            logging.getLogger(__name__).exception("the job workers did not stop cleanly")
        for adapter in adapters:
            try:
                await adapter.stop()
            except Exception:  # one adapter failing to stop must not keep the others (or the store) open
                logging.getLogger(__name__).exception("the %s adapter did not stop cleanly", adapter.name)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bot.close()


LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# A key short enough to guess over the network protects nothing.
MIN_KEY_CHARS = 16


async def _serve(config: Config, host: str, port: int) -> None:
    """The GPU host: load the configured backends and serve them over HTTP until Ctrl-C."""

    from bot.backends import registry
    from bot.server import Host

    api_key = os.environ.get(config.serve.api_key_env, "").strip() or None
    if api_key is None and host not in LOOPBACK:
        raise ConfigError(
            f"{config.serve.api_key_env} is not set, and the host would listen on {host}, beyond this machine: export a "
            "long random key (clients send it as a Bearer token), or bind 127.0.0.1."
        )
    if api_key is not None and len(api_key) < MIN_KEY_CHARS:
        raise ConfigError(
            f"{config.serve.api_key_env} is {len(api_key)} characters; use at least {MIN_KEY_CHARS} random ones, "
            "e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    loaded = [await registry.load(kind, getattr(config.backends, kind)) for kind in ("text", "image", "music")]  # type: ignore[arg-type]
    for _, status in loaded:
        print(f"atelier: {status.describe()}", file=sys.stderr)
    slots = {"image": config.jobs.image.slots, "music": config.jobs.music.slots}
    moderator = None
    if config.serve.moderation:
        from bot.enforcement import load_moderator

        moderator = await load_moderator(config.moderation)
        print(f"atelier: {moderator.describe()} (checks every prompt this host receives)", file=sys.stderr)
    host_app = Host(loaded[0][0], loaded[1][0], loaded[2][0], api_key, slots, moderator)
    try:
        listening = await host_app.listen(host, port)
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port} ({error.strerror}); choose another --port.") from None
    print(f"atelier: serving on http://{host}:{port}/v1 (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await listening.close()
        for backend, _ in loaded:
            if backend is not None:
                await backend.close()
        if moderator is not None:
            await moderator.close()


def _backup_or_restore(command: str, config: Config, file: Path) -> None:
    """`backup FILE`: SQLite's online backup of the live store; `restore FILE`: a checked backup replaces the store."""
    import sqlite3

    from bot.store.health import StoreRefused, backup, restore

    store = Path(config.bot.db)
    try:
        if command == "backup":
            pages = backup(store, file)
            print(f"atelier: backed up {store} to {file} ({pages} pages, {file.stat().st_size:,} bytes)")
        else:
            kept = restore(file, store)
            print(f"atelier: restored {store} from {file}" + (f"; the previous store is kept as {kept}" if kept else ""))
    except StoreRefused as error:
        raise ConfigError(str(error)) from None
    except (sqlite3.Error, OSError) as error:
        raise ConfigError(f"could not {command} {store} ({error}); check the paths and free disk space.") from None


async def _migrate(config: Config, to: str, password_env: str | None) -> None:
    """`migrate --to URL`: copy the whole store into an empty PostgreSQL database and verify the counts."""
    from bot.store import ConversationStore, StoreRefused
    from bot.store.copy import CopyRefused, copy_store
    from bot.store.engine import is_driver_error, is_postgres_url

    if not is_postgres_url(to):
        raise ConfigError("--to must be a postgresql://user@host/database URL (the store to copy into).")
    try:  # the same rules as bot.db: no password in the URL
        target_section = BotSection(db=to, db_password_env=password_env or config.bot.db_password_env)
    except ValidationError:
        raise ConfigError("--to holds a password; remove it and pass --password-env with the variable that holds it.") from None
    try:
        source = await ConversationStore.open(config.bot.db, config.bot.db_password())
        try:
            target = await ConversationStore.open(to, target_section.db_password())
            try:
                report = await copy_store(source, target)
            finally:
                await target.close()
        finally:
            await source.close()
    except (StoreRefused, CopyRefused) as error:
        raise ConfigError(str(error)) from None
    except Exception as error:  # the database refused (rights, a value it cannot take): one line, no traceback
        if not is_driver_error(error) and not isinstance(error, RuntimeError):
            raise
        raise ConfigError(f"the copy stopped ({first_line(error)}); nothing was kept in the target. Check its user's rights "
                          "(it must create tables) and run migrate again.") from None  # fmt: skip
    print(f"atelier: copied {source.engine.where} to {target.engine.where}: {report.summary()} (counts verified).")
    variable = f" and bot.db_password_env: {target_section.db_password_env}" if target_section.db_password_env else ""
    print(f"atelier: to use it, set bot.db: {to}{variable} in config.yaml.")


def _models(config: Config, action: str, what: str, to: Path | None) -> None:
    """`models list`: each configured model and where it stands; `models download`: fetch them (hub progress bars)."""
    from bot.models import ModelsError, download, list_lines

    try:
        lines = list_lines(config) if action == "list" else download(config, what, to)
    except ModelsError as error:
        raise ConfigError(str(error)) from None
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        config = _load(args)
        setup_logging(config, args.log_level or ("INFO" if args.command == "run" else "WARNING"))
        if args.command == "chat":
            asyncio.run(_chat(config))
        elif args.command == "run":
            _check_run(config)
            asyncio.run(_run(config))
        elif args.command in ("backup", "restore"):
            _backup_or_restore(args.command, config, Path(args.file))
        elif args.command == "migrate":
            asyncio.run(_migrate(config, args.to, args.password_env))
        elif args.command == "models":
            _models(config, args.action, args.what, Path(args.to) if args.to else None)
        else:
            asyncio.run(_serve(config, args.host or config.serve.host, args.port or config.serve.port))
    except ConfigError as error:
        print(f"atelier: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
