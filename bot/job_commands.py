"""The generation commands: /imagine, /compose, /queue, /cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.commands import command
from bot.errors import BackendUnavailable, UserInputError
from bot.job_args import compose_params, imagine_params
from bot.jobs import JobKind
from bot.messages import Message
from moderation.policy import removes_clothing

if TYPE_CHECKING:
    from adapters.base import Reply
    from bot.core import Bot


async def submit(bot: Bot, message: Message, reply: Reply, kind: JobKind, params: dict[str, Any]) -> None:
    """Moderate, queue, and tell the user where the job stands."""
    if kind not in bot.jobs.runners:
        status = next(s for s in bot.statuses if s.kind == kind)
        raise BackendUnavailable(f"No {kind} generator is available right now ({status.reason}); /status shows why.")
    await bot.moderate_request(message, params["prompt"], kind)
    if removes_clothing(params.get("negative", "")):
        # "--negative clothes" asks for a nude picture: judge the prompt as the request it becomes.
        await bot.moderate_request(message, f"{params['prompt']}, nude, naked", kind)
    # The scheduler itself tells the user the job is queued, before any update can overtake that.
    await bot.jobs.submit(kind, message.user_key, str(message.conversation), message.id or None, params, reply)


@command("imagine", "/imagine <prompt> [--seed N] [--size WxH] [--n 1-4] [--negative TEXT]",
         "make a picture (PNG); the same --seed gives the same picture", takes_args=True)
async def _imagine(bot: Bot, message: Message, reply: Reply, args: str) -> None:
    await submit(bot, message, reply, "image", imagine_params(args))


@command("compose", "/compose <prompt> [--duration 1-30] [--seed N] [--tempo BPM]",
         "make music (WAV, and MIDI from the built-in composer)", takes_args=True)
async def _compose(bot: Bot, message: Message, reply: Reply, args: str) -> None:
    await submit(bot, message, reply, "music", compose_params(args))


@command("queue", "/queue", "list your queued and running jobs")
async def _queue(bot: Bot, message: Message, reply: Reply, args: str) -> None:
    jobs = bot.jobs.jobs_of(message.user_key)
    if not jobs:
        await reply.send("You have no queued or running jobs.")
        return
    lines = ["Your jobs:"]
    for job in jobs:
        if job.status == "running":
            state = f"running, {round(job.progress * 100)}%" + (f" ({job.note})" if job.note else "")
        else:
            state = f"queued, position {bot.jobs.position(job)}"
        lines.append(f"{job.id} {job.kind} '{job.summary}': {state}")
    await reply.send("\n".join(lines))


@command("cancel", "/cancel [job-id]", "cancel a queued or running job (your newest if no id)", takes_args=True)
async def _cancel(bot: Bot, message: Message, reply: Reply, args: str) -> None:
    if len(args.split()) > 1:
        raise UserInputError("Give one job id, e.g. /cancel 1a2b3c4d; /queue lists yours.")
    job = await bot.jobs.cancel(args or None, message.user_key, message.author.is_admin)
    # The job's own conversation hears "Cancelled …" when it stops; answer here too if this is elsewhere.
    if job.conversation != str(message.conversation):
        await reply.send(f"Cancelling {job.kind} job {job.id}.")
