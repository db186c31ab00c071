"""Replies on Slack: threaded answers streamed natively or by paced chat.update, uploads, and job buttons."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.chunks import split_message
from adapters.slack_convert import MESSAGE_LIMIT, markdown_to_mrkdwn
from bot.messages import Artifact

log = logging.getLogger(__name__)
EDIT_INTERVAL_S = 1.0
PLACEHOLDER = "…"
# chat.update is Tier 3: about 50 calls a minute for the whole workspace, shared by every reply.
UPDATES_PER_MINUTE = 50
# Errors meaning "this workspace cannot stream natively": fall back to chat.update for good.
NO_STREAMING = {"unknown_method", "not_allowed", "not_allowed_token_type", "feature_not_enabled", "method_deprecated", "not_enabled"}
Private = Callable[[str], Awaitable[None]]
SECTION_LIMIT = 3000


def api_error(error: SlackApiError) -> str:
    """Slack's error code (e.g. not_in_channel), or the HTTP status when the body was not Slack's JSON."""
    data = error.response.data
    return str(data.get("error")) if isinstance(data, dict) else f"HTTP {error.response.status_code}"


class WorkspacePacer:
    """One workspace's budget of message updates; every reply draws from it."""

    def __init__(self, per_minute: float = UPDATES_PER_MINUTE) -> None:
        self.interval = 60.0 / per_minute
        self._next_free = 0.0
        self.streaming = True  # until the workspace says otherwise

    def try_take(self) -> bool:
        """Take an update now if the budget allows; intermediate edits are simply skipped when it does not."""
        now = time.monotonic()
        if now < self._next_free:
            return False
        self._next_free = now + self.interval
        return True

    async def take(self) -> None:
        """Wait for an update slot (for edits that must happen, like the final text)."""
        now = time.monotonic()
        wait = self._next_free - now
        self._next_free = max(now, self._next_free) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


def job_blocks(text: str, buttons: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """A section with the text and, when there are any, a row of buttons (action_id, label, value)."""
    # A section holds at most 3,000 characters.
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}}]
    if buttons:
        elements = [{"type": "button", "action_id": action, "text": {"type": "plain_text", "text": label}, "value": value,
                     **({"style": "danger"} if action == "atelier_cancel" else {})} for action, label, value in buttons]  # fmt: skip
        blocks.append({"type": "actions", "elements": elements})
    return blocks


class SlackReply:
    """Answers in one Slack thread (or top level in a DM)."""

    def __init__(
        self,
        client: AsyncWebClient,
        channel: str,
        thread_ts: str | None,
        pacer: WorkspacePacer,
        recipient: tuple[str, str] | None = None,
        edit_interval: float = EDIT_INTERVAL_S,
        private: Private | None = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.pacer = pacer
        self.recipient = recipient  # (team, user) the answer is for; native streaming needs it
        self.edit_interval = edit_interval
        self.private = private
        self.last_ts: str | None = None
        self._job: tuple[str, str, int] | None = None
        self._status: str | None = None
        self._status_open = False
        self._answer: list[str] = []  # the messages of the streamed answer, for edit()

    def bind_job(self, job_id: str, kind: str, variations: int) -> None:
        """This reply answers a job: its status message carries Cancel, then Re-roll and Variations."""
        self._job = (job_id, kind, variations)

    async def _post(self, text: str, blocks: list[dict[str, Any]] | None = None) -> str:
        response = await self.client.chat_postMessage(
            channel=self.channel, thread_ts=self.thread_ts, text=text, blocks=blocks, unfurl_links=False, unfurl_media=False
        )
        ts = str(response["ts"])
        self.last_ts = ts
        return ts

    async def _update(self, ts: str, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        await self.client.chat_update(channel=self.channel, ts=ts, text=text, blocks=blocks or [])

    async def send(self, text: str) -> None:
        """Post text in the thread, split below Slack's display limit."""
        for piece in split_message(text, MESSAGE_LIMIT):
            await self._say(markdown_to_mrkdwn(piece))

    async def _say(self, text: str) -> None:
        if self._job is not None and self._status is None:
            job_id = self._job[0]
            self._status, self._status_open = await self._post(text, job_blocks(text, [("atelier_cancel", "Cancel", job_id)])), True
            return
        if self._status_open:
            await self._close_status(text)  # the outcome replaces the status; saying it twice is noise
            return
        await self._post(text)

    async def stream(self, chunks: AsyncIterator[str]) -> str:
        """Stream natively where the workspace can, else a placeholder edited within the workspace's budget."""
        if self.pacer.streaming and self.thread_ts is not None and self.recipient is not None:
            try:
                response = await self.client.chat_startStream(
                    channel=self.channel, thread_ts=self.thread_ts,
                    recipient_team_id=self.recipient[0], recipient_user_id=self.recipient[1],
                )  # fmt: skip
            except SlackApiError as error:
                if api_error(error) not in NO_STREAMING:
                    raise
                log.info("this workspace cannot stream messages (%s); editing a placeholder instead", api_error(error))
                self.pacer.streaming = False
            else:
                return await self._stream_natively(str(response["ts"]), chunks)
        return await self._stream_by_updates(chunks)

    async def _stream_natively(self, ts: str, chunks: AsyncIterator[str]) -> str:
        self.last_ts = ts
        self._answer = [ts]
        loop = asyncio.get_running_loop()
        text, sent, last = "", 0, loop.time() - self.edit_interval  # the first text goes out at once
        try:
            async for chunk in chunks:
                text += chunk
                if loop.time() - last >= self.edit_interval and self.pacer.try_take():
                    upto = _safe_cut(text, MESSAGE_LIMIT, final=False)
                    if upto > sent:
                        await self.client.chat_appendStream(channel=self.channel, ts=ts, markdown_text=text[sent:upto])
                        sent, last = upto, loop.time()
        except BaseException:
            # Even when the model fails or the answer is refused, the message must leave its streaming
            # state, without the rest: it is about to be replaced. A failure here must not hide why.
            with contextlib.suppress(SlackApiError):
                await self.pacer.take()
                await self.client.chat_stopStream(channel=self.channel, ts=ts)
            raise
        upto = max(_safe_cut(text, MESSAGE_LIMIT, final=True), sent)
        await self.pacer.take()
        await self.client.chat_stopStream(channel=self.channel, ts=ts, markdown_text=text[sent:upto] or None)
        for piece in split_message(text[upto:], MESSAGE_LIMIT):
            self._answer.append(await self._post(markdown_to_mrkdwn(piece)))
        return text

    async def _stream_by_updates(self, chunks: AsyncIterator[str]) -> str:
        ts = await self._post(PLACEHOLDER)
        self._answer = [ts]
        loop = asyncio.get_running_loop()
        text, shown, last = "", PLACEHOLDER, loop.time() - self.edit_interval  # the first text replaces the placeholder at once
        async for chunk in chunks:
            text += chunk
            due = loop.time() - last >= self.edit_interval
            if due and len(text) <= MESSAGE_LIMIT and text.strip() and self.pacer.try_take():
                shown, last = text, loop.time()
                await self._update(ts, markdown_to_mrkdwn(shown))
        pieces = split_message(text, MESSAGE_LIMIT) or [PLACEHOLDER]
        if pieces[0] != shown:
            wait = self.edit_interval - (loop.time() - last)
            if wait > 0:
                await asyncio.sleep(wait)
            await self.pacer.take()
            await self._update(ts, markdown_to_mrkdwn(pieces[0]))
        for piece in pieces[1:]:
            self._answer.append(await self._post(markdown_to_mrkdwn(piece)))
        return text

    async def edit(self, text: str) -> None:
        """Replace the streamed answer (all of its messages) with `text`: a withdrawn answer leaves nothing behind."""
        answer = self._answer or ([self.last_ts] if self.last_ts else [])
        if not answer:
            await self.send(text)
            return
        await self.pacer.take()
        await self._update(answer[0], markdown_to_mrkdwn(split_message(text, MESSAGE_LIMIT)[0]))
        for ts in answer[1:]:
            await self.client.chat_delete(channel=self.channel, ts=ts)

    async def attach(self, artifact: Artifact, caption: str = "") -> None:
        """Upload a file into the thread (files.getUploadURLExternal → upload → files.completeUploadExternal)."""
        if self._status_open:
            await self._close_status(None)
        await self.client.files_upload_v2(
            channel=self.channel, thread_ts=self.thread_ts, file=artifact.data, filename=artifact.filename,
            title=artifact.filename, initial_comment=caption or None,
        )  # fmt: skip

    async def _close_status(self, outcome: str | None) -> None:
        """The job ended: Cancel goes; after a result, Re-roll and Variations take its place."""
        self._status_open = False
        if self._status is None or self._job is None:
            return
        job_id, kind, variations = self._job
        buttons = [] if outcome else [("atelier_reroll", "Re-roll", job_id)]
        buttons += [] if outcome else [(f"atelier_vary_{k}", f"Variations {k}", f"{job_id}:{k}") for k in range(1, variations + 1)]
        text = outcome or f"{kind.capitalize()} job {job_id}: done."
        try:
            await self.pacer.take()
            await self._update(self._status, text, job_blocks(text, buttons))
        except SlackApiError as error:
            log.warning("could not update a job's status message (%s)", api_error(error))

    async def progress(self, fraction: float, note: str = "") -> None:
        """Edit the job's status message when the workspace's update budget allows (progress is never urgent)."""
        text = f"{round(fraction * 100)}%" + (f" · {note}" if note else "")
        if self._job is None:
            await self._say(text)
            return
        job_id, kind, _ = self._job
        text = f"{kind.capitalize()} job {job_id}: {text}"
        if self._status is None:
            await self._say(text)
        elif self._status_open and self.pacer.try_take():
            await self._update(self._status, text, job_blocks(text, [("atelier_cancel", "Cancel", job_id)]))

    async def error(self, text: str) -> None:
        """Say what went wrong: privately for a button press, else in the thread."""
        line = split_message(text, MESSAGE_LIMIT)[0]
        if self.private is not None and self._job is None:  # a press refused; a job's own failure belongs in its thread
            await self.private(line)
        else:
            await self._say(markdown_to_mrkdwn(line))


class PrivateReply:
    """Answers a slash command only to the person who typed it (response_url, ephemeral)."""

    def __init__(self, private: Private) -> None:
        self.private = private

    async def send(self, text: str) -> None:
        """Answer privately."""
        await self.private(markdown_to_mrkdwn(split_message(text, MESSAGE_LIMIT)[0]))

    async def stream(self, chunks: AsyncIterator[str]) -> str:
        """Collect the whole answer, then send it once (ephemeral messages cannot be edited by the bot)."""
        text = "".join([chunk async for chunk in chunks])
        await self.send(text)
        return text

    async def edit(self, text: str) -> None:
        """Send the corrected text."""
        await self.send(text)

    async def attach(self, artifact: Artifact, caption: str = "") -> None:
        """Files go to threads; here only say where it is."""
        await self.send(f"{artifact.filename} is ready {caption}".strip())

    async def progress(self, fraction: float, note: str = "") -> None:
        """Not shown privately."""

    async def error(self, text: str) -> None:
        """Answer privately."""
        await self.send(text)


def _safe_cut(text: str, limit: int, final: bool) -> int:
    """How much of `text` a streamed message may hold now: never past the limit, and mid-answer only whole words."""
    if final and len(text) <= limit:
        return len(text)
    window = text[:limit]
    space = max(window.rfind(" "), window.rfind("\n"))
    if space > 0:
        return space + 1
    return len(window) if len(text) > limit else 0
