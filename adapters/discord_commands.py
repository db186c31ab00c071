"""Atelier's slash commands for Discord: each becomes the text command the core already understands."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands

from bot.job_args import MAX_GUIDANCE, MAX_SEED, MAX_STEPS

log = logging.getLogger(__name__)

# (interaction, command text, root of the conversation or None for the channel, private answer)
Answer = Callable[[discord.Interaction[Any], str, "int | None", bool], Awaitable[None]]
SIZES = ["512x512", "768x768", "1024x1024", "512x768", "768x512", "256x256"]
Seed = app_commands.Range[int, 0, MAX_SEED]


def command_line(name: str, text: str, **options: object) -> str:
    """`/name text --option value …`, quoting values with spaces so the core parses them back intact."""
    words = [f"/{name}", text.strip()] if text.strip() else [f"/{name}"]
    for option, value in options.items():
        if value is None or value == "":
            continue
        rendered = str(value)
        words += [f"--{option}", f'"{rendered.replace(chr(34), chr(39))}"' if " " in rendered or not rendered else rendered]
    return " ".join(words)


def build_tree(client: discord.Client, answer: Answer) -> app_commands.CommandTree[Any]:
    """The command tree: /chat, /imagine, /compose, /reset, /persona, /status, /queue, /cancel, /forget-me, /help."""
    tree: app_commands.CommandTree[Any] = app_commands.CommandTree(client)

    @tree.command(name="chat", description="Talk to Atelier; reply to its answer to go on")
    @app_commands.describe(prompt="What you want to say")
    async def chat(interaction: discord.Interaction[Any], prompt: str) -> None:
        await answer(interaction, prompt, interaction.id, False)

    @tree.command(name="imagine", description="Make a picture (PNG); the same seed gives the same picture")
    @app_commands.describe(prompt="What to draw", seed="Repeat a picture with its seed", size="Width x height",
                           n="How many pictures (1-4)", negative="What to leave out",
                           steps="Denoising steps (1-50; more is slower)", guidance="How closely to follow the prompt (0-20)")  # fmt: skip
    @app_commands.choices(size=[app_commands.Choice(name=size, value=size) for size in SIZES])
    async def imagine(
        interaction: discord.Interaction[Any],
        prompt: str,
        seed: Seed | None = None,
        size: str | None = None,
        n: app_commands.Range[int, 1, 4] | None = None,
        negative: str | None = None,
        steps: app_commands.Range[int, 1, MAX_STEPS] | None = None,
        guidance: app_commands.Range[float, 0, MAX_GUIDANCE] | None = None,
    ) -> None:
        line = command_line("imagine", prompt, seed=seed, size=size, n=n, negative=negative, steps=steps, guidance=guidance)
        await answer(interaction, line, interaction.id, False)

    @tree.command(name="compose", description="Make music (WAV)")
    @app_commands.describe(prompt="What it should sound like", duration="Seconds (1-30)", seed="Repeat a piece with its seed",
                           guidance="How closely to follow the prompt (0-20; models that take it)")  # fmt: skip
    async def compose(
        interaction: discord.Interaction[Any],
        prompt: str,
        duration: app_commands.Range[int, 1, 30] | None = None,
        seed: Seed | None = None,
        guidance: app_commands.Range[float, 0, MAX_GUIDANCE] | None = None,
    ) -> None:
        await answer(interaction, command_line("compose", prompt, duration=duration, seed=seed, guidance=guidance), interaction.id, False)

    @tree.command(name="reset", description="Start a new conversation in this thread or DM")
    async def reset(interaction: discord.Interaction[Any]) -> None:
        await answer(interaction, "/reset", None, False)

    @tree.command(name="persona", description="Set who Atelier is here (admins in servers), or 'default'")
    @app_commands.describe(description="e.g. You are a cheerful pirate; or 'default'")
    async def persona(interaction: discord.Interaction[Any], description: str | None = None) -> None:
        await answer(interaction, command_line("persona", description or ""), None, False)

    @tree.command(name="status", description="Which models are active, and why")
    async def status(interaction: discord.Interaction[Any]) -> None:
        await answer(interaction, "/status", None, True)

    @tree.command(name="queue", description="Your queued and running jobs")
    async def queue(interaction: discord.Interaction[Any]) -> None:
        await answer(interaction, "/queue", None, True)

    @tree.command(name="cancel", description="Cancel a job (your newest if no id)")
    @app_commands.describe(job="The job id, e.g. 1a2b3c4d")
    async def cancel(interaction: discord.Interaction[Any], job: str | None = None) -> None:
        await answer(interaction, command_line("cancel", job or ""), None, True)

    @tree.command(name="forget-me", description="Delete everything Atelier stored about you")
    async def forget_me(interaction: discord.Interaction[Any]) -> None:
        await answer(interaction, "/forget-me", None, True)

    @tree.command(name="help", description="List the commands, or explain one")
    @app_commands.describe(command="A command name, e.g. imagine")
    async def help_(interaction: discord.Interaction[Any], command: str | None = None) -> None:
        await answer(interaction, command_line("help", command or ""), None, True)

    @tree.error
    async def on_error(interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        log.warning("slash command failed: %s", error.__class__.__name__)
        if not interaction.response.is_done():
            await interaction.response.send_message("That didn't work; check the options and try again.", ephemeral=True)

    return tree


async def sync_commands(tree: app_commands.CommandTree[Any], guilds: list[int]) -> None:
    """Register the commands: to each configured guild (instant), else globally (Discord may take up to an hour)."""
    try:
        if not guilds:
            await tree.sync()
            return
        for guild_id in guilds:
            guild = discord.Object(guild_id)
            tree.copy_global_to(guild=guild)
            await tree.sync(guild=guild)
    except discord.HTTPException as error:
        # The bot still answers mentions and DMs; only the slash menu is missing.
        log.warning("could not register slash commands (%s %s); check the applications.commands scope", error.status, error.text)
