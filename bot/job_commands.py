"""The generation commands: /imagine, /compose, /queue, /cancel."""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any

from bot.commands import CommandContext, command
from bot.errors import BackendUnavailable, PermissionDenied, UserInputError
from bot.job_args import MAX_SEED, compose_params, imagine_params
from bot.jobs import JobKind
from bot.messages import ConversationKey, Message
from moderation.policy import removes_clothing

if TYPE_CHECKING:
    from bot.ports import Reply


async def submit(
    ctx: CommandContext, message: Message, reply: Reply, kind: JobKind, params: dict[str, Any], *, own_prompt: bool = True
) -> None:
    """Moderate, queue, and tell the user where the job stands.

    `own_prompt=False` for a re-roll or variation: the prompt may be another user's words, which must
    not join this user's remembered requests (where that user's /forget-me could not reach them).
    """
    if kind not in ctx.jobs.runners:
        status = next(s for s in ctx.statuses if s.kind == kind)
        raise BackendUnavailable(f"No {kind} generator is available right now ({status.reason}); /status shows why.")
    await ctx.moderate_request(message, params["prompt"], kind, remember=own_prompt)
    if removes_clothing(params.get("negative", "")):
        # "--negative clothes" asks for a nude picture: judge the prompt as the request it becomes.
        await ctx.moderate_request(message, f"{params['prompt']}, nude, naked", kind, remember=False)
    await ctx.notice_fallback(message, reply, kind)
    await _notice_ignored(ctx, message, reply, kind, params)
    # The scheduler itself tells the user the job is queued, before any update can overtake that.
    await ctx.jobs.submit(kind, message.user_key, message.conversation, message.id or None, params, reply)


async def _notice_ignored(ctx: CommandContext, message: Message, reply: Reply, kind: JobKind, params: dict[str, Any]) -> None:
    """Say once per user and kind when given options the active generator does not use (e.g. --steps)."""
    backend = ctx.image if kind == "image" else ctx.music
    ignored = sorted(option for option in getattr(backend, "ignored_options", ()) if params.get(option) is not None)
    key = f"{message.user_key}:{kind}:{','.join(ignored)}"
    if not ignored or key in ctx.options_noticed:
        return
    ctx.options_noticed.add(key)
    names = " and ".join(f"--{option}" for option in ignored)
    generator = getattr(backend, "name", kind)
    await reply.send(f"Note: the {generator} {kind} generator has no use for {names}, so {'they are' if len(ignored) > 1 else 'it is'} ignored here.")


@command("imagine", "/imagine <prompt> [--seed N] [--size WxH] [--n 1-4] [--negative TEXT] [--steps 1-50] [--guidance 0-20]",
         "make a picture (PNG); the same --seed gives the same picture", takes_args=True)
async def _imagine(ctx: CommandContext, message: Message, reply: Reply, args: str) -> None:
    await submit(ctx, message, reply, "image", imagine_params(args))


@command("compose", "/compose <prompt> [--duration 1-30] [--seed N] [--tempo BPM] [--guidance 0-20]",
         "make music (WAV, and MIDI from the built-in composer)", takes_args=True)
async def _compose(ctx: CommandContext, message: Message, reply: Reply, args: str) -> None:
    await submit(ctx, message, reply, "music", compose_params(args))


def _admin_over(message: Message, conversation: ConversationKey) -> bool:
    """Admin rights count only where they were given: anyone can own some server, so not over others' jobs."""
    here = message.conversation
    return message.author.is_admin and bool(here.workspace) and (conversation.platform, conversation.workspace) == (here.platform, here.workspace)


async def _earlier_job(ctx: CommandContext, message: Message, job_id: str, verb: str) -> tuple[JobKind, dict[str, Any]]:
    """The kind and parameters of a stored job the user may build on (theirs, or any for an admin)."""
    if not job_id.strip():  # "again": the user's newest job here
        row = await ctx.store.newest_job(message.user_key, message.conversation.channel_key)
        if row is None:
            raise UserInputError(f"You have no job here to {verb} yet; make one with /imagine or /compose.")
    else:
        row = await ctx.store.job(job_id.strip().lower())
    if row is None:
        raise UserInputError(f"No job {job_id} is stored; give an id from a result, e.g. /{verb} 1a2b3c4d, or none for your newest.")
    if row["user_id"] != message.user_key and not _admin_over(message, ConversationKey.parse(row["conversation"])):
        raise PermissionDenied(f"Job {row['id']} is someone else's; only they or an admin can {verb} it.")
    return row["kind"], json.loads(row["params"])


@command("reroll", "/reroll [job-id]", "make a job again with a new seed (your newest here if no id)", takes_args=True)
async def _reroll(ctx: CommandContext, message: Message, reply: Reply, args: str) -> None:
    kind, params = await _earlier_job(ctx, message, args, "reroll")
    params = {**params, "seed": secrets.randbelow(MAX_SEED + 1)}
    params.pop("variation", None)
    await submit(ctx, message, reply, kind, params, own_prompt=False)


@command("vary", "/vary <job-id> [picture 1-4]", "make variations of one picture of an image job", takes_args=True)
async def _vary(ctx: CommandContext, message: Message, reply: Reply, args: str) -> None:
    words = args.split()
    if not 1 <= len(words) <= 2:
        raise UserInputError("Give a job id and which picture, e.g. /vary 1a2b3c4d 2.")
    kind, params = await _earlier_job(ctx, message, words[0], "vary")
    if kind != "image":
        raise UserInputError("Only pictures have variations; /reroll makes the music again with a new seed.")
    if not getattr(ctx.image, "supports_variations", False):
        raise BackendUnavailable("This image model cannot make variations; /reroll makes new pictures instead.")
    count = int(params.get("n", 1))
    picture = words[1] if len(words) == 2 else "1"
    if not picture.isdigit() or not 1 <= int(picture) <= count:
        raise UserInputError(f"Job {words[0]} made {count} picture(s); choose one from 1 to {count}.")
    # A variation of a variation keeps its base picture and draws new nudges of it.
    seed = params["seed"] if params.get("variation") else params["seed"] + int(picture) - 1
    variation = {**params, "seed": seed, "variation": 1 + secrets.randbelow(MAX_SEED)}
    await submit(ctx, message, reply, "image", variation, own_prompt=False)


@command("queue", "/queue", "list your queued and running jobs")
async def _queue(ctx: CommandContext, message: Message, reply: Reply, args: str) -> None:
    jobs = await ctx.jobs.jobs_of(message.user_key)
    if not jobs:
        await reply.send("You have no queued or running jobs.")
        return
    lines = ["Your jobs:"]
    for job in jobs:
        if job.status == "running":
            state = f"running, {round(job.progress * 100)}%" + (f" ({job.note})" if job.note else "")
        else:
            state = f"queued, position {await ctx.jobs.position(job)}"
        lines.append(f"{job.id} {job.kind} '{job.summary}': {state}")
    await reply.send("\n".join(lines))


@command("cancel", "/cancel [job-id]", "cancel a queued or running job (your newest if no id)", takes_args=True)
async def _cancel(ctx: CommandContext, message: Message, reply: Reply, args: str) -> None:
    if len(args.split()) > 1:
        raise UserInputError("Give one job id, e.g. /cancel 1a2b3c4d; /queue lists yours.")
    found = await ctx.jobs.get(args) if args else None
    admin = found is not None and _admin_over(message, found.conversation)
    job = await ctx.jobs.cancel(args or None, message.user_key, admin)
    # Always answered: a slash command waits for a reply. The job's own conversation also hears "Cancelled …".
    await reply.send(f"Cancelling {job.kind} job {job.id}.")
