"""The command table: parsing `/name args`, permissions, and one small handler per command."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bot.errors import PermissionDenied, UnknownCommand, UserInputError
from bot.job_args import closest
from bot.messages import Message

if TYPE_CHECKING:
    from bot.backends.registry import BackendStatus
    from bot.job_running import JobRunner
    from bot.ports import Reply
    from bot.store import ConversationStore
    from moderation import Kind as ModerationKind


class CommandContext(Protocol):
    """What a command handler may use of the bot: the store, the jobs, request moderation and a few notices."""

    store: ConversationStore
    jobs: JobRunner
    image: Any  # the image backend (its name, ignored options, whether it makes variations), or None
    music: Any
    statuses: list[BackendStatus]
    options_noticed: set[str]

    async def moderate_request(self, message: Message, text: str, kind: ModerationKind, *, remember: bool = True) -> None:
        """Refuse (raise) unless moderation allows the request."""
        ...

    async def notice_fallback(self, message: Message, reply: Reply, kind: str = "text") -> None:
        """Say once that a kind runs on its fallback."""
        ...

    def status_lines(self) -> list[str]:
        """What /status shows."""
        ...

    async def forget(self, user_key: str) -> str:
        """Delete everything about a user; what to tell them."""
        ...


Handler = Callable[[CommandContext, Message, "Reply", str], Awaitable[None]]
_COMMAND = re.compile(r"^/([A-Za-z][A-Za-z0-9_-]*)(?:\s+(.*))?$", re.DOTALL)
MAX_PERSONA_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Command:
    """One entry of the command table."""

    name: str
    usage: str
    summary: str
    handler: Handler
    takes_args: bool = False
    admin_in_channels: bool = False


COMMANDS: dict[str, Command] = {}


def command(
    name: str, usage: str, summary: str, *, takes_args: bool = False, admin_in_channels: bool = False
) -> Callable[[Handler], Handler]:
    """Register a handler in the command table."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name] = Command(name, usage, summary, handler, takes_args, admin_in_channels)
        return handler

    return register


def parse(text: str) -> tuple[str, str] | None:
    """(name, args) when `text` is a command; None for chat (including paths such as /usr/bin)."""
    match = _COMMAND.match(text)
    if match is None:
        return None
    return match.group(1).lower(), (match.group(2) or "").strip()


async def dispatch(ctx: CommandContext, message: Message, reply: Reply, name: str, args: str) -> None:
    """Check the command exists, its arguments and the user's rights, then run it."""
    entry = COMMANDS.get(name)
    if entry is None:
        raise UnknownCommand(name, closest(name, list(COMMANDS)))
    if args and not entry.takes_args:
        raise UserInputError(f"/{name} takes no arguments; usage: {entry.usage}")
    if entry.admin_in_channels and not message.is_dm and not message.author.is_admin:
        raise PermissionDenied(f"Only server admins can use /{name} in a shared channel; try it in a DM with the bot.")
    await entry.handler(ctx, message, reply, args)


@command("help", "/help [command]", "list the commands, or explain one", takes_args=True)
async def _help(ctx: CommandContext, message: Message, reply: Reply, args: str) -> None:
    if args:
        name = args.split()[0].lstrip("/").lower()
        entry = COMMANDS.get(name)
        if entry is None:
            raise UnknownCommand(name, closest(name, list(COMMANDS)))
        await reply.send(f"{entry.usage} — {entry.summary}")
        return
    lines = ["Talk to me in plain words, or use a command:"]
    lines += [f"{entry.usage} — {entry.summary}" for entry in COMMANDS.values()]
    await reply.send("\n".join(lines))


@command("reset", "/reset", "start a new conversation here (earlier messages are no longer used)")
async def _reset(ctx: CommandContext, message: Message, reply: Reply, args: str) -> None:
    await ctx.store.reset(message.conversation)
    await reply.send("Started a new conversation; I won't use the earlier messages here.")


@command(
    "persona",
    "/persona <description> | /persona default",
    "set who I am in this conversation, or go back to the default",
    takes_args=True,
    admin_in_channels=True,
)
async def _persona(ctx: CommandContext, message: Message, reply: Reply, args: str) -> None:
    if not args:
        current = (await ctx.store.conversation(message.conversation)).persona
        shown = f'"{current}"' if current else "the default"
        raise UserInputError(f"The persona here is {shown}; set one with /persona <description>, e.g. /persona You are a pirate.")
    if len(args) > MAX_PERSONA_CHARS:
        raise UserInputError(f"A persona can be at most {MAX_PERSONA_CHARS:,} characters; shorten it.")
    if args.lower() in {"default", "reset", "clear"}:
        await ctx.store.set_persona(message.conversation, None, message.user_key)
        await reply.send("Back to the default persona in this conversation.")
        return
    # A persona steers every later answer, so it is checked like a request.
    await ctx.moderate_request(message, args, "chat")
    await ctx.store.set_persona(message.conversation, args, message.user_key)
    await reply.send(f'Persona set for this conversation: "{args}"')


@command("status", "/status", "show which models are active and why")
async def _status(ctx: CommandContext, message: Message, reply: Reply, args: str) -> None:
    await reply.send("\n".join(ctx.status_lines()))


@command("forget-me", "/forget-me", "delete everything stored about you")
async def _forget_me(ctx: CommandContext, message: Message, reply: Reply, args: str) -> None:
    await reply.send(await ctx.forget(message.user_key))
