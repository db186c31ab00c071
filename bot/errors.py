"""One exception tree: every BotError carries a one-line message that tells the user what to do."""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """An exception's message as one short line (its first line, or its class name), for one-line explanations."""
    text = str(error).strip().splitlines()
    return text[0][:200] if text else error.__class__.__name__


class BotError(Exception):
    """Base of every error a user may see; `user_message` is safe to post in chat."""

    default_message = "Something went wrong; please try again."

    def __init__(self, user_message: str | None = None) -> None:
        self.user_message = user_message or self.default_message
        super().__init__(self.user_message)


class UserInputError(BotError):
    """The request itself was malformed: empty, too long, bad arguments."""

    default_message = "That request could not be read; type /help for the commands."


class UnknownCommand(UserInputError):
    """A /command that is not in the command table."""

    def __init__(self, name: str, meant: str | None = None) -> None:
        shown = name if len(name) <= 40 else name[:39] + "…"
        hint = f"did you mean /{meant}? " if meant else ""
        super().__init__(f"Unknown command /{shown}; {hint}type /help to see the commands.")
        self.name = name


class PermissionDenied(BotError):
    """The user may not do this here (admin-only command in a shared channel)."""

    default_message = "Only server admins can do that here; ask one, or try it in a DM with the bot."


class BackendUnavailable(BotError):
    """No backend of the needed kind could be loaded."""

    default_message = "That generator is not available right now; /status shows why."


class BackendFailed(BotError):
    """A backend raised while generating."""

    default_message = "The model failed while answering; please try again in a moment."


class ModerationUnavailable(BotError):
    """Moderation could not run, so nothing may be generated."""

    default_message = (
        "Safety checks are not running right now, so nothing can be generated; "
        "please try again later or tell an admin."
    )


class RequestRefused(BotError):
    """Moderation blocked the request; the message says what and why."""


class CoolingDown(BotError):
    """The user is on a generation cooldown after repeated refused requests."""

    def __init__(self, seconds_left: float) -> None:
        minutes = max(1, round(seconds_left / 60))
        super().__init__(
            f"Generation is paused for you for about {minutes} more minute(s) after several refused requests; "
            "/help and /status still work."
        )


class ConfigError(Exception):
    """config.yaml or the environment is wrong; the message names the key or variable to fix."""


class StillStarting(BotError):
    """The models are still loading; the user should try again in a few seconds."""

    default_message = "I'm still starting up: the models and safety checks are loading. Try again in a few seconds."
