"""Replies on Discord: to a message (channel posts) or to an interaction (webhook follow-ups), with job buttons."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import discord

from adapters.chunks import split_message
from adapters.discord_convert import MESSAGE_LIMIT
from bot.messages import Artifact

log = logging.getLogger(__name__)
# Discord allows about five edits per message per five seconds; once a second leaves room.
EDIT_INTERVAL_S = 1.0
PLACEHOLDER = "…"
# Interaction tokens live 15 minutes; later posts go to the channel instead of the follow-up webhook.
INTERACTION_TOKEN_S = 14 * 60
INVALID_WEBHOOK_TOKEN = 50027  # Discord's code once an interaction's 15 minutes are over
NO_PINGS = discord.AllowedMentions(everyone=False, roles=False, users=False, replied_user=False)
BUTTON_LABELS = {"reroll": "Re-roll", "vary": "Variations", "cancel": "Cancel"}
Reference = discord.Message | discord.MessageReference | discord.PartialMessage


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"atelier:(?P<action>reroll|vary|cancel):(?P<job>[0-9a-f]{8})(?::(?P<picture>[1-4]))?",
):
    """A button under a job's messages; its custom_id carries the job, so it works after a restart."""

    def __init__(self, action: str, job_id: str, picture: int = 0) -> None:
        self.action, self.job_id, self.picture = action, job_id, picture
        label = BUTTON_LABELS[action] + (f" {picture}" if action == "vary" else "")
        style = discord.ButtonStyle.danger if action == "cancel" else discord.ButtonStyle.secondary
        custom_id = f"atelier:{action}:{job_id}" + (f":{picture}" if picture else "")
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=custom_id))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> JobButton:
        """Rebuild the button from a press (discord.py calls this)."""
        return cls(match["action"], match["job"], int(match["picture"] or 0))

    @property
    def command(self) -> str:
        """The text command this button stands for, so a press goes through the same checks as typing it."""
        return f"/{self.action} {self.job_id}" + (f" {self.picture}" if self.picture else "")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Hand the press to the adapter that owns the client."""
        press = getattr(interaction.client, "on_job_button", None)
        if press is not None:
            await press(interaction, self.command)


def buttons(*items: JobButton) -> discord.ui.View:
    """A view of job buttons (fully dynamic, so discord.py routes presses by custom_id alone)."""
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    return view


class DiscordReply:
    """Answers one Discord message: replies in its channel, streams by editing, attaches files."""

    def __init__(
        self,
        channel: discord.abc.Messageable,
        reference: Reference | None,
        on_posted: Callable[[int], None] = lambda message_id: None,
        edit_interval: float = EDIT_INTERVAL_S,
    ) -> None:
        self.channel = channel
        self.reference = reference
        self.on_posted = on_posted
        self.edit_interval = edit_interval
        self.last: discord.Message | None = None
        self._status: discord.Message | None = None  # a job's queue/progress message, edited in place
        self._status_open = False
        self._job: tuple[str, str, int] | None = None
        self._attached = 0
        self._answer: list[discord.Message] = []  # the messages of the streamed answer, for edit()
        self._last_progress = 0.0

    def bind_job(self, job_id: str, kind: str, variations: int) -> None:
        """This reply answers a job: its messages get cancel, re-roll and variation buttons."""
        self._job = (job_id, kind, variations)

    async def _send(self, text: str, reference: Reference | None, **extra: Any) -> discord.Message:
        if reference is not None:
            extra["reference"] = reference
        return await self.channel.send(text or None, allowed_mentions=NO_PINGS, **extra)  # type: ignore[no-any-return]

    def _typing(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self.channel.typing()

    async def _edit(self, message: discord.Message, **fields: Any) -> None:
        await message.edit(**fields)

    async def _post(self, text: str = "", **extra: Any) -> discord.Message:
        # Only the first message of an answer is a reply; follow-ups just continue below it.
        reference = self.reference if self.last is None else None
        # The first message of a job is its status message, with the cancel button.
        new_job = self._job[0] if self._job is not None and self._status is None else None
        if new_job is not None:
            extra.setdefault("view", buttons(JobButton("cancel", new_job)))
        elif self._status_open:
            await self._close_status()
        message = await self._send(text, reference, **extra)
        self.last = message
        if new_job is not None:
            self._status, self._status_open = message, True
        self.on_posted(message.id)
        return message

    async def _close_status(self) -> None:
        """The job is over: its cancel button goes."""
        self._status_open = False
        if self._status is not None:
            with contextlib.suppress(discord.HTTPException):
                await self._edit(self._status, view=None)

    async def send(self, text: str) -> None:
        """Post text, split into messages of at most 2,000 characters."""
        for piece in split_message(text, MESSAGE_LIMIT):
            await self._post(piece)

    async def stream(self, chunks: AsyncIterator[str]) -> str:
        """Post a placeholder at once, edit it as text arrives (at most once per interval), then finish."""
        async with self._typing():
            message = await self._post(PLACEHOLDER)
        self._answer = [message]
        loop = asyncio.get_running_loop()
        # The first text replaces the placeholder at once; the interval paces the edits after it.
        text, shown, last_edit = "", PLACEHOLDER, loop.time() - self.edit_interval
        async for chunk in chunks:
            text += chunk
            if loop.time() - last_edit >= self.edit_interval and len(text) <= MESSAGE_LIMIT and text.strip():
                shown = text
                await self._edit(message, content=shown)
                last_edit = loop.time()
        pieces = split_message(text, MESSAGE_LIMIT) or [PLACEHOLDER]
        if pieces[0] != shown:
            wait = self.edit_interval - (loop.time() - last_edit)
            if wait > 0:
                await asyncio.sleep(wait)  # keep the cadence for the final edit too
            await self._edit(message, content=pieces[0])
        for piece in pieces[1:]:
            self._answer.append(await self._post(piece))
        return text

    async def edit(self, text: str) -> None:
        """Replace the streamed answer (all its messages) with `text`: a withdrawn answer leaves nothing behind."""
        answer = self._answer or ([self.last] if self.last is not None else [])
        if not answer:
            await self.send(text)
            return
        await self._edit(answer[0], content=split_message(text, MESSAGE_LIMIT)[0])
        for message in answer[1:]:
            with contextlib.suppress(discord.NotFound):
                await message.delete()

    def _upload_limit(self) -> int:
        guild = getattr(self.channel, "guild", None)
        return guild.filesize_limit if guild is not None else 10 * 1024 * 1024

    def _result_buttons(self, artifact: Artifact) -> discord.ui.View | None:
        if self._job is None:
            return None
        job_id, _, variations = self._job
        items = [JobButton("reroll", job_id)] if self._attached == 0 else []
        if artifact.mime_type.startswith("image/") and self._attached < variations:
            items.append(JobButton("vary", job_id, self._attached + 1))
        return buttons(*items) if items else None

    async def attach(self, artifact: Artifact, caption: str = "") -> None:
        """Post a generated file (with re-roll and variation buttons for a job), or say why it cannot be uploaded."""
        limit = self._upload_limit()
        if len(artifact.data) > limit:
            await self._post(
                f"{artifact.filename} is {len(artifact.data) / 1e6:.1f} MB, over this server's {limit / 1e6:.0f} MB upload "
                "limit; try a smaller size or a shorter duration."
            )
            return
        view = self._result_buttons(artifact)
        self._attached += 1
        file = discord.File(io.BytesIO(artifact.data), filename=artifact.filename)
        await self._post(caption[:MESSAGE_LIMIT], file=file, **({"view": view} if view is not None else {}))

    async def progress(self, fraction: float, note: str = "") -> None:
        """Show progress by editing the job's status message (its cancel button stays)."""
        text = f"{round(fraction * 100)}%" + (f" · {note}" if note else "")
        if self._job is not None:
            text = f"{self._job[1].capitalize()} job {self._job[0]}: {text}"
        now = time.monotonic()
        if self._status is None:
            self._status = await self._post(text)
        elif now - self._last_progress >= self.edit_interval:  # Discord allows ~5 edits per 5 s per message
            await self._edit(self._status, content=text)
        else:
            return
        self._last_progress = now

    async def error(self, text: str) -> None:
        """Say what went wrong, in one message."""
        await self._post(split_message(text, MESSAGE_LIMIT)[0])


class InteractionReply(DiscordReply):
    """Answers a slash command or a button press through the interaction's follow-up webhook."""

    def __init__(
        self,
        interaction: discord.Interaction[Any],
        channel: discord.abc.Messageable,
        on_posted: Callable[[int], None] = lambda message_id: None,
        edit_interval: float = EDIT_INTERVAL_S,
        private_errors: bool = False,
        private: bool = False,
    ) -> None:
        super().__init__(channel, None, on_posted, edit_interval)
        self.interaction = interaction
        self.private_errors = private_errors
        self.private = private  # the deferral was ephemeral: every follow-up must be too
        self._started = time.monotonic()
        self._token_refused = False

    def _token_expired(self) -> bool:
        return self._token_refused or time.monotonic() - self._started > INTERACTION_TOKEN_S

    async def _edit(self, message: discord.Message, **fields: Any) -> None:
        """Through the interaction's webhook while its token lives, then as an ordinary message of the bot's."""
        if not self._token_expired():
            try:
                await message.edit(**fields)
                return
            except discord.HTTPException as error:
                if error.code != INVALID_WEBHOOK_TOKEN:
                    raise
                self._token_refused = True
        if self.private:
            return  # an ephemeral message can only be edited with the token; leave it as it is
        partial = getattr(self.channel, "get_partial_message", None)
        if partial is not None:
            await partial(message.id).edit(**fields)

    def _typing(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return contextlib.nullcontext()  # the deferral already shows "thinking…"

    def _upload_limit(self) -> int:
        return self.interaction.filesize_limit  # Discord says, per interaction, what this place accepts

    async def _send(self, text: str, reference: Reference | None, **extra: Any) -> discord.Message:
        if self._token_expired():
            return await super()._send(text, None, **extra)
        extra = {key: value for key, value in extra.items() if value is not None}
        if self.private:
            extra["ephemeral"] = True
        try:
            return await self.interaction.followup.send(text or discord.utils.MISSING, wait=True, allowed_mentions=NO_PINGS, **extra)
        except discord.HTTPException as error:
            if error.code != INVALID_WEBHOOK_TOKEN or self.private:
                raise
            self._token_refused = True  # Discord's clock ran out before ours: post in the channel from now on
            return await super()._send(text, None, **{k: v for k, v in extra.items() if k != "ephemeral"})

    async def error(self, text: str) -> None:
        """A refused or mistaken button press is told only to the person who pressed it."""
        if self.private_errors and self._job is None:  # a refused press; a job's own failure is everyone's news
            await self.interaction.followup.send(split_message(text, MESSAGE_LIMIT)[0], ephemeral=True, allowed_mentions=NO_PINGS)
        else:
            await super().error(text)
