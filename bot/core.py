"""Bot: the pipeline (clean → command or chat → moderation → backend → reply → store) and the one error sink."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from pathlib import Path
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot import commands, job_commands  # noqa: F401 - job_commands registers /imagine, /compose, /queue, /cancel
from bot.backends import registry
from bot.backends.base import LearningBackend, TextBackend, TextOptions
from bot.backends.media import (
    ImageBackend,
    ImageRequest,
    MusicBackend,
    MusicRequest,
    Progress,
)
from bot.config import Config
from bot.conversation import build_prompt, clean_text
from bot.enforcement import Enforcement, load_moderator
from bot.delivery import delete_job_files
from bot.streaming import guarded, settle_memory
from bot.errors import (
    BackendFailed,
    BackendUnavailable,
    BotError,
    ModerationUnavailable,
    RequestRefused,
    StillStarting,
)
from bot.jobs import Job, Runner, scheduler_for
from bot.messages import Artifact, ConversationKey, Message
from bot.recent import RecentRequests
from bot.store import ConversationStore, StoredTurn
from moderation import Kind as ModerationKind
from moderation import Moderator, Verdict

if TYPE_CHECKING:
    from bot.ports import Reply

log = logging.getLogger(__name__)

STILL_STARTING = StillStarting.default_message
# What answers while the models load: asking whether the bot is up must not be refused as "not up".
SERVED_WHILE_STARTING = frozenset({"status", "help"})
# Messages prepared (store, moderation) at once; the rest wait their turn in arrival order.
ADMISSION_LIMIT = 16
# How long streamed text may wait for its output check: a check per word would cost a classifier run
# per word, and the platforms show edits about once a second anyway.
OUTPUT_CHECK_INTERVAL_S = 0.5
# After the first text is out, checks need come no oftener than the platforms show edits (once a second).
OUTPUT_RECHECK_INTERVAL_S = 1.0
# How much of the already shown answer is judged again with each new piece, as its context.
OUTPUT_CONTEXT_CHARS = 300


def _recent_user_turns(history: Sequence[StoredTurn], user_key: str, count: int) -> list[str]:
    """This user's newest turns (history is newest first): the context moderation judges with.

    Only their own: in a shared channel, someone else's words must not colour their request.
    """
    return [turn.text for turn in history if turn.role == "user" and turn.author == user_key][:count]


@dataclass
class _ConversationLock:
    lock: asyncio.Lock
    users: int = 0


class Bot:
    """The platform-neutral core; adapters call `handle(message, reply)` for every event."""

    def __init__(
        self,
        config: Config,
        store: ConversationStore,
        text: TextBackend | None,
        statuses: list[registry.BackendStatus],
        moderator: Moderator,
        image: ImageBackend | None = None,
        music: MusicBackend | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.text = text
        self.image = image
        self.music = music
        self.statuses = statuses
        self.moderator = moderator
        self.enforcement = Enforcement(store, config.moderation)
        self.recent = RecentRequests(config.moderation.context_turns)
        self.jobs = scheduler_for(store, config.jobs, self._runners(), self._variable_kinds())
        # How to reach a conversation of each platform (set by adapters through `attach`), for resumed jobs.
        self._reply_factories: dict[str, Callable[[Job], Reply | None]] = {}
        self._jobs_started = False
        self.started_at = time.time()
        self._locks: dict[ConversationKey, _ConversationLock] = {}
        self._fallback_noticed: set[str] = set()
        self.options_noticed: set[str] = set()  # user:kind:options already told "ignored here"
        # Adapters that keep something of their own about a user (the console's typed history) forget it too.
        self.forget_listeners: list[Callable[[str], Awaitable[None]]] = []
        self._admission = asyncio.Semaphore(ADMISSION_LIMIT)
        # Checked once: isinstance against a Protocol is slow enough to show up per message.
        self._learner = text if isinstance(text, LearningBackend) else None
        self._loading: asyncio.Task[None] | None = None
        self._jobs_wanted = False

    @classmethod
    async def start(cls, config: Config, *, load_in_background: bool = False) -> Bot:
        """Open the store, load the backends (with fallbacks) and the moderator.

        With `load_in_background`, the models load while the caller connects to its platform; until
        they are ready, requests are answered "still starting" (generation is never unchecked).
        """
        store = await ConversationStore.open(config.bot.db, config.bot.db_password())
        if load_in_background:
            bot = cls(config, store, None, [], Moderator.loading(config.moderation.enabled))
            await bot.enforcement.load()
            bot._loading = asyncio.create_task(bot._load_models(), name="models-load")
            return bot
        text, statuses, image, music = await registry.load_configured(config.backends)
        bot = cls(config, store, text, statuses, await load_moderator(config.moderation), image, music)
        await bot.enforcement.load()
        if bot._learner is not None:
            await bot._learner.learn(await store.learned_texts())
        settle_memory()
        return bot

    @property
    def starting(self) -> bool:
        """True while the models load in the background."""
        return self._loading is not None and not self._loading.done()

    async def _load_models(self) -> None:
        """Load the backends, then the moderator, and swap them in; held jobs start after."""
        try:
            text, statuses, image, music = await registry.load_configured(self.config.backends)
            self.text, self.image, self.music, self.statuses = text, image, music, statuses
            # Nothing can have been queued meanwhile (every request was told "still starting"), so the
            # scheduler is rebuilt with the runners of what loaded.
            self.jobs = scheduler_for(self.store, self.config.jobs, self._runners(), self._variable_kinds())
            learner = text if isinstance(text, LearningBackend) else None
            if learner is not None:
                await learner.learn(await self.store.learned_texts())
            self._learner = learner
            moderator = await load_moderator(self.config.moderation)
        except Exception as error:  # never a silent "starting" forever: refuse generation, and say why
            log.exception("the models could not be loaded")
            moderator = Moderator(None, problem=f"loading failed ({error.__class__.__name__}; details in the log)")
        self.moderator, stand_in = moderator, self.moderator
        await stand_in.close()
        log.info("%s", self.moderator.describe())
        settle_memory()
        if self._jobs_wanted:
            await self._begin_jobs()

    def _variable_kinds(self) -> frozenset[str]:
        return frozenset({"image"} if getattr(self.image, "supports_variations", False) else ())

    def _runners(self) -> dict[str, Runner]:
        runners: dict[str, Runner] = {}
        if self.image is not None:
            image = self.image

            async def run_image(job: Job, progress: Progress) -> list[Artifact]:
                return await image.generate(ImageRequest(**job.params), progress)

            runners["image"] = run_image
        if self.music is not None:
            music = self.music

            async def run_music(job: Job, progress: Progress) -> list[Artifact]:
                return await music.generate(MusicRequest(**job.params), progress)

            runners["music"] = run_music
        return runners

    def attach(self, platform: str, reply_for_job: Callable[[Job], Reply | None]) -> None:
        """An adapter registers how to reach a conversation of its platform (for jobs resumed after a restart)."""
        self._reply_factories[platform] = reply_for_job

    async def start_jobs(self) -> None:
        """Resume jobs left by a previous run and start the job workers (once adapters are registered)."""
        if self.starting:  # resumed jobs need their backends: they start when the models have loaded
            self._jobs_wanted = True
            return
        await self._begin_jobs()

    async def _begin_jobs(self) -> None:
        if self._jobs_started:
            return
        self._jobs_started = True

        def reply_for(job: Job) -> Reply | None:
            factory = self._reply_factories.get(job.conversation.platform)
            return factory(job) if factory is not None else None

        await self.jobs.start(reply_for)

    async def close(self) -> None:
        """Stop the job workers, release backends and the store."""
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            await asyncio.gather(self._loading, return_exceptions=True)
        await self.jobs.stop()
        await self.enforcement.drain()
        await self.moderator.close()
        for backend in (self.text, self.image, self.music):
            if backend is not None:
                await backend.close()
        await self.store.close()

    # --- the pipeline --------------------------------------------------------------------

    async def handle(self, message: Message, reply: Reply) -> None:
        """Answer one message; never raises. Messages of one conversation are answered in order."""
        async with self._conversation_turn(message.conversation):
            try:
                text = clean_text(message.text, self.config.bot.max_message_chars)
                parsed = commands.parse(text)
                if self.starting and (parsed is None or parsed[0] not in SERVED_WHILE_STARTING):
                    raise StillStarting()
                if parsed is not None:
                    await commands.dispatch(self, message, reply, *parsed)
                else:
                    await self._chat(message, text, reply)
            except BotError as error:
                await self._tell(reply, error.user_message)
            except Exception:
                ref = secrets.token_hex(3)
                log.exception("error %s while handling a message in %s", ref, message.conversation)
                await self._tell(reply, f"Sorry, something broke on our side (ref {ref}); please try again.")

    @asynccontextmanager
    async def _conversation_turn(self, key: ConversationKey) -> AsyncIterator[None]:
        # asyncio.Lock wakes waiters first-in first-out, which keeps a conversation in order.
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _ConversationLock(asyncio.Lock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]

    async def _tell(self, reply: Reply, text: str) -> None:
        try:
            await reply.error(text)
        except Exception:
            log.exception("could not deliver an error message to the user")

    async def _chat(self, message: Message, text: str, reply: Reply) -> None:
        backend = self.text
        if backend is None:
            raise BackendUnavailable("No text model is available right now; /status shows why.")
        # Admission: a burst of messages is prepared a few dozen at a time, so one loop iteration
        # never carries hundreds of them (the gateway heartbeat must keep its turn). Model
        # streaming happens outside, so long answers do not hold a place.
        async with self._admission:
            conversation = await self.store.conversation(message.conversation)
            history = await self.store.history(conversation.id, self.config.bot.history_messages)
            await self._moderate(message, text, "chat", self._context(message, history))
            self.recent.add(message.user_key, message.conversation, text)
            await self.store.touch_user(message.user_key, message.author.name)
            turn_id = await self.store.add_turn(conversation.id, "user", text, message.user_key, None, message.id or None)

        persona = conversation.persona or await self._channel_persona(message.conversation) or self.config.bot.persona
        prompt = build_prompt(
            persona,
            [StoredTurn("user", text), *history],
            backend.context_tokens - self.config.bot.reply_tokens,
            backend.count_tokens,
        )
        await self.notice_fallback(message, reply)
        options = TextOptions(max_tokens=self.config.bot.reply_tokens, scope=message.conversation.scope)
        refused: str | None = None
        try:
            answer = await reply.stream(self._checked(message, guarded(backend.stream(prompt, options), self.config.backends.text.timeout_s)))
        except RequestRefused as error:
            refused, answer = error.user_message, ""  # the message only: the exception would hold this frame
        if refused is None and not answer.strip():
            raise BackendFailed("The model gave an empty answer; try rephrasing your message.")

        # Learn only after answering, or the bot parrots the message straight back. The store
        # flags what was learned, so /forget-me unlearns exactly that and nothing of anyone else's.
        learned_id = None
        if self._learner is not None:
            await self._learner.learn([(message.conversation.scope, text)])
            learned_id = turn_id
        if refused is not None:
            if learned_id is not None:
                await self.store.mark_learned(learned_id)
            await reply.edit(refused)  # the checked part shown so far gives way to the refusal
            return
        await self.store.add_turn(conversation.id, "assistant", answer, None, message.user_key, learned_id=learned_id)

    async def _checked(self, message: Message, chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        """Pass the model's text on only after output moderation has read it, each piece once.

        Checking every token would cost a classifier run per word; checking only the finished text
        would show a harmful answer while it streams. So new text waits until OUTPUT_CHECK_INTERVAL_S
        has passed (OUTPUT_RECHECK_INTERVAL_S after the first release, the platforms' edit cadence) and
        is judged with the end of what was already shown as its context: one pass over new text, at a
        cost that does not grow with the answer. The last piece's verdict is the one recorded.
        """
        clock = asyncio.get_running_loop().time
        shown, pending, last_check = "", "", clock()
        async with contextlib.aclosing(chunks):  # a refusal stops the model too, not only the posting
            async for chunk in chunks:
                pending += chunk
                due = OUTPUT_RECHECK_INTERVAL_S if shown else OUTPUT_CHECK_INTERVAL_S
                if pending.strip() and clock() - last_check >= due:
                    await self._moderate(message, shown[-OUTPUT_CONTEXT_CHARS:] + pending, "output", (), store_allowed=False)
                    released, shown, pending = pending, shown + pending, ""
                    yield released
                    last_check = clock()  # the adapter's own pacing while suspended is not model time
        if pending.strip() or (pending and not shown):
            await self._moderate(message, shown[-OUTPUT_CONTEXT_CHARS:] + pending, "output", ())
        if pending:
            yield pending

    async def _channel_persona(self, key: ConversationKey) -> str | None:
        """A persona an admin set for the whole channel (its thread-less key), which its threads and chains inherit."""
        if not key.thread:
            return None
        channel = ConversationKey(key.platform, key.workspace, key.channel)
        return (await self.store.conversation(channel)).persona

    async def moderate_request(self, message: Message, text: str, kind: ModerationKind, *, remember: bool = True) -> None:
        """Check a generation request with the user's recent requests here; raise if refused.

        `remember=False` for a reading of the request that is not the user's own words.
        """
        history: list[StoredTurn] = []
        if self.config.moderation.context_turns:
            conversation = await self.store.conversation(message.conversation)
            history = await self.store.history(conversation.id, self.config.bot.history_messages)
        await self._moderate(message, text, kind, self._context(message, history))
        if remember:
            self.recent.add(message.user_key, message.conversation, text)

    def _context(self, message: Message, history: Sequence[StoredTurn]) -> list[str]:
        """The user's recent requests in this channel (any command) and turns in this conversation, newest first."""
        turns = self.config.moderation.context_turns
        recent = [*self.recent.get(message.user_key, message.conversation), *_recent_user_turns(history, message.user_key, turns)]
        return list(dict.fromkeys(recent))[:turns]

    async def _moderate(
        self, message: Message, text: str, kind: ModerationKind, context: Sequence[str], *, store_allowed: bool = True
    ) -> Verdict | None:
        """Run moderation and record the decision; refuse when it cannot run or when it blocks.

        `store_allowed=False` records only a refusal (a streamed answer's interim checks).
        """
        if kind != "output":
            await self.enforcement.check_cooldown(message.user_key)
        if self.moderator.enabled and not self.moderator.available:
            raise ModerationUnavailable(STILL_STARTING if self.moderator.starting else None)
        verdict = await self.moderator.check(
            text,
            kind,
            context,
            scope=message.conversation.scope,
            nsfw=message.nsfw,
            mentions=message.mentions,
            with_attachment=any(a.mime_type.startswith(("image/", "audio/")) for a in message.attachments),
        )
        notice = await self.enforcement.record(message, kind, text, verdict) if verdict.blocked or store_allowed else ""
        if verdict.blocked:
            raise RequestRefused((verdict.message or f"I can't help with that ({verdict.category}).") + notice)
        return verdict

    async def notice_fallback(self, message: Message, reply: Reply, kind: str = "text") -> None:
        """Tell each channel once per kind when the backend in use is a fallback."""
        status = next((s for s in self.statuses if s.kind == kind), None)
        where = f"{kind}:{message.conversation.scope}:{message.conversation.channel}"
        if status is None or not status.uses_fallback or where in self._fallback_noticed:
            return
        self._fallback_noticed.add(where)
        stands_in = {"text": "model answers", "image": "generator draws", "music": "composer plays"}.get(kind, "backend works")
        instead = f"the simple offline {status.active} {stands_in}" if status.active in registry.EMBEDDED else f"{status.active} stands in"
        fetch = f" An admin can fetch it with `python -m bot models download {kind}`." if "models download" in status.reason else ""
        await reply.send(f"Note: the configured {kind} model ({status.configured}) is not available, so {instead} for now; /status has details.{fetch}")

    # --- what commands need --------------------------------------------------------------

    def status_lines(self) -> list[str]:
        """The backend, moderation and uptime lines /status shows."""
        uptime = int(time.time() - self.started_at)
        return [
            *(status.describe() for status in self.statuses),
            *(["models: loading (chat, pictures, music)"] if self.starting and not self.statuses else []),
            self.moderator.describe(),
            *([f"store: {self.store.problem_line}"] if self.store.problem_line else []),
            f"up {uptime // 3600}h {uptime % 3600 // 60}m {uptime % 60}s",
        ]

    async def forget(self, user_key: str) -> str:
        """Delete what is stored about a user, unlearn their words, and say what was removed."""
        await self.jobs.cancel_all(user_key)
        self.recent.forget(user_key)
        texts = await self.store.learned_texts_by(user_key)
        if self._learner is not None and texts:
            await self._learner.forget(texts)
        job_ids = await self.store.job_ids_of(user_key)
        report = await self.store.forget_user(user_key)
        for listener in self.forget_listeners:
            try:
                await listener(user_key)
            except Exception:  # what the store held is gone already; say what an adapter could not clear
                log.exception("an adapter could not forget user %s", user_key)
        files = await asyncio.to_thread(delete_job_files, Path(self.config.bot.output_dir), job_ids)
        return (
            f"Done: deleted {report.messages} message(s) you wrote or that answered you, {len(job_ids)} job(s)"
            f"{f' and their {files} saved file(s)' if files else ''}"
            f"{', your profile' if report.profile else ''} and any persona you set. "
            "New messages you send are stored as usual."
        )
