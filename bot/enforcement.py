"""What follows a moderation decision: the stored event, the log-channel hook, and cooldowns."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bot.config import ModerationSection
from bot.errors import CoolingDown
from bot.messages import Message
from bot.store import ConversationStore
from moderation import Kind, Moderator, Policy, Verdict
from moderation.guard import Guard

log = logging.getLogger(__name__)
EXCERPT_CHARS = 300


@dataclass(frozen=True, slots=True)
class ModerationEvent:
    """A refused request (or generated text), as the admin log channel sees it."""

    message: Message
    kind: Kind
    verdict: Verdict
    excerpt: str
    cooldown_started: bool


EventListener = Callable[[ModerationEvent], Awaitable[None]]


def format_event(event: ModerationEvent) -> str:
    """One log-channel line: who, where, what was refused and why, and the start of the request."""
    verdict = event.verdict
    target = f" about {verdict.target}" if verdict.target else ""
    cooldown = " · cooldown started" if event.cooldown_started else ""
    where = event.message.conversation
    excerpt = event.excerpt.replace("`", "'")[:200]
    return (
        f"Refused {event.kind} from {event.message.author.name} ({event.message.author.id}) in {where.channel}: "
        f"{verdict.category}{target}, score {verdict.score:.2f}{f' ({verdict.stage})' if verdict.stage else ''}{cooldown}\n> {excerpt}"
    )


async def load_moderator(section: ModerationSection) -> Moderator:
    """The Moderator the config describes: default policy, per-server overrides, admin examples."""
    default = Policy(section.actions, section.thresholds, section.strict_public_figures, section.allow_nsfw)
    servers = {
        scope: Policy(
            {**section.actions, **server.actions},
            {**section.thresholds, **server.thresholds},
            default.strict_public_figures if server.strict_public_figures is None else server.strict_public_figures,
            default.allow_nsfw if server.allow_nsfw is None else server.allow_nsfw,
        )
        for scope, server in section.servers.items()
    }
    guard = None
    if section.enabled and section.guard.enabled:
        guard = await _load_guard(section)
    return await Moderator.load(
        default,
        servers,
        enabled=section.enabled,
        model_path=Path(section.model) if section.model else None,
        examples=section.examples,
        guard=guard,
        guard_band=section.guard.band,
        threads=section.threads,
    )


async def _load_guard(section: ModerationSection) -> Guard | None:
    """The configured guard model, or None (said in the log) when it cannot load: the fast stage then decides alone."""
    from moderation.guard import GuardError, build_guard

    spec = section.guard
    api_key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
    try:
        options: dict[str, object] = {"type": spec.type, "model": spec.model}
        options |= {"device": spec.device} if spec.type == "transformers" else {"base_url": spec.base_url, "timeout_s": spec.timeout_s}
        return await asyncio.to_thread(build_guard, options, api_key)
    except GuardError as error:
        log.error("the guard model could not load, so the fast stage decides alone: %s", error)
        return None


class Enforcement:
    """Stores every decision, tells listeners about refusals, and puts repeat offenders on a cooldown."""

    def __init__(self, store: ConversationStore, settings: ModerationSection) -> None:
        self.store = store
        self.settings = settings
        self.listeners: list[EventListener] = []
        self._cooldowns: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def load(self) -> None:
        """Pick up cooldowns that were running when the process stopped."""
        self._cooldowns = await self.store.active_cooldowns()

    async def check_cooldown(self, user_key: str) -> None:
        """Raise CoolingDown while the user's generation is paused."""
        if self.store.engine.shared:  # another process may have paused (or forgiven) this user
            shared = await self.store.cooldown_until(user_key)
            if shared is None:
                self._cooldowns.pop(user_key, None)
            else:
                self._cooldowns[user_key] = shared
        until = self._cooldowns.get(user_key)
        if until is None:
            return
        left = until - time.time()
        if left <= 0:
            del self._cooldowns[user_key]
            return
        raise CoolingDown(left)

    async def record(self, message: Message, kind: Kind, text: str, verdict: Verdict) -> str:
        """Store the decision; for a refusal, notify listeners and return any cooldown notice."""
        now = time.time()
        blocked = verdict.blocked
        await self.store.add_moderation_event(
            {
                "at": now,
                "user_id": message.user_key,
                "scope": message.conversation.scope,
                "conversation": str(message.conversation),
                "kind": kind,
                "action": verdict.action,
                "category": verdict.category,
                "target": verdict.target,
                "score": round(verdict.score, 4),
                "reasons": json.dumps(verdict.reasons),
                "stage": verdict.stage,
                # Only refusals keep their words, for admins to review; allowed text lives in messages.
                "excerpt": text[:EXCERPT_CHARS] if blocked else None,
            }
        )
        if not blocked:
            return ""
        notice = ""
        cooldown = self.settings.cooldown
        counts = kind != "output" and verdict.category != "self_harm" and verdict.score >= cooldown.min_score
        if counts and cooldown.duration_s > 0:
            recent = await self.store.recent_blocks(message.user_key, now - cooldown.window_s, cooldown.min_score)
            if recent >= cooldown.blocks and message.user_key not in self._cooldowns:
                until = now + cooldown.duration_s
                self._cooldowns[message.user_key] = until
                await self.store.set_cooldown(message.user_key, until)
                notice = (
                    f" That's {recent} refused requests in {cooldown.window_s / 60:g} min, so generation is paused "
                    f"for you for {cooldown.duration_s / 60:g} min."
                )
        event = ModerationEvent(message, kind, verdict, text[:EXCERPT_CHARS], bool(notice))
        for listener in self.listeners:
            # Posting to a log channel must not hold up the user's answer.
            task = asyncio.create_task(self._notify(listener, event), name="moderation-log")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return notice

    async def _notify(self, listener: EventListener, event: ModerationEvent) -> None:
        try:
            await listener(event)
        except Exception:
            log.exception("a moderation log listener failed")

    async def drain(self) -> None:
        """Wait for log-channel posts in flight (on shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
