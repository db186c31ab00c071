"""Start a Discord bot (Atelier or a peer's script) pointed at the fake Discord named in the environment.

    python bench/peer_launch.py atelier --config PATH       # runs `python -m bot run --config PATH`
    python bench/peer_launch.py script PATH/llmcord.py      # runs a peer's script in its own folder

BENCH_DISCORD_REST and BENCH_DISCORD_GATEWAY name the fake's REST base and gateway; discord.py is
pointed there before the bot imports it, so the bot's own code runs unchanged.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path


# bench/ holds a discord.py of its own: keep the folder off the path so `import discord` finds the package.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]


def point_discord_at_the_fake() -> None:
    """Send discord.py's REST calls and gateway connection to the fake Discord."""
    import discord
    import yarl
    from discord.gateway import DiscordWebSocket

    discord.http.Route.BASE = os.environ["BENCH_DISCORD_REST"]  # type: ignore[misc]
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["BENCH_DISCORD_GATEWAY"])


def main() -> None:
    """Patch discord.py, then hand over to the bot."""
    point_discord_at_the_fake()
    what, rest = sys.argv[1], sys.argv[2:]
    if what == "atelier":
        root = Path(__file__).resolve().parent.parent
        sys.path.insert(0, str(root))
        from bot.__main__ import main as atelier

        sys.exit(atelier(["run", *rest]))
    script = Path(rest[0]).resolve()
    os.chdir(script.parent)
    sys.path.insert(0, str(script.parent))
    sys.argv = [str(script)]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
