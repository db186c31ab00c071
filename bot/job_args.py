"""Parsing /imagine and /compose arguments into requests, with one-line explanations for bad ones."""

from __future__ import annotations

import difflib
import re
import secrets
import shlex
from collections.abc import Callable
from typing import Any

from bot.errors import UserInputError

MAX_SEED = 2**32 - 1
MIN_TEMPO, MAX_TEMPO = 40, 240
IMAGINE_OPTIONS = ("--seed", "--size", "--n", "--negative", "--steps", "--guidance")
COMPOSE_OPTIONS = ("--duration", "--seed", "--tempo", "--guidance")
MAX_STEPS = 50
MAX_GUIDANCE = 20
_SIZE = re.compile(r"^(\d+)[xX×](\d+)$")
_OPTION = re.compile(r"^--[a-z]+(=.*)?$")
# Phones turn "--" into a dash; "—seed 5" is still meant as an option.
_DASHED = re.compile(r"^[—–]([a-z]+(=.*)?)$")
# "-seed 4" is a typo for an option only when "--seed" is one: "-ish" stays part of the prompt.
_ONE_DASH = re.compile(r"^-([a-z]+)(=.*)?$")


def closest(word: str, choices: tuple[str, ...] | list[str]) -> str | None:
    """The choice `word` was most likely meant to be, if any is close (for "did you mean")."""
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.75)  # "dance" is not "cancel" (0.73)
    return found[0] if found else None


def _words(args: str) -> list[str]:
    """Split on spaces; only double quotes group words, so apostrophes (a fox's den) stay text."""
    lexer = shlex.shlex(args, posix=True)
    lexer.whitespace_split = True
    lexer.quotes = '"'
    lexer.commenters = ""
    lexer.escape = ""
    try:
        return list(lexer)
    except ValueError:
        raise UserInputError('A double quote is not closed; close it, e.g. --negative "blurry, text".') from None


def split_options(command: str, args: str, allowed: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """Separate the prompt words from `--option value` pairs (also `--option=value`)."""
    words = [_DASHED.sub(r"--\1", word) for word in _words(args)]
    prompt: list[str] = []
    options: dict[str, str] = {}
    index = 0
    while index < len(words):
        word = words[index]
        single = _ONE_DASH.match(word)
        if single is not None and f"--{single.group(1)}" in allowed:
            meant = f"--{single.group(1)}"
            raise UserInputError(f"Did you mean {meant}? Options take two dashes, e.g. /{command} … {meant} {_example(meant)}.")
        if _OPTION.match(word):
            name, _, value = word.partition("=")
            if name not in allowed:
                guess = closest(name, allowed)
                hint = f"did you mean {guess}? " if guess else ""
                raise UserInputError(f"Unknown option {name} for /{command}; {hint}options: {', '.join(allowed)}.")
            if not value:
                index += 1
                if index >= len(words):
                    raise UserInputError(f"{name} needs a value, e.g. {name} {_example(name)}.")
                value = words[index]
            options[name] = value
        else:
            prompt.append(word)
        index += 1
    return " ".join(prompt).strip(), options


def _example(name: str) -> str:
    return {"--seed": "42", "--size": "512x512", "--n": "2", "--negative": '"blurry"', "--duration": "10", "--tempo": "120",
            "--steps": "4", "--guidance": "3"}[name]


def _number(name: str, value: str, low: int, high: int, convert: Callable[[str], float] = int) -> Any:
    try:
        number = convert(value)
    except ValueError:
        raise UserInputError(f"{name} must be a number from {low} to {high}; got {value!r}.") from None
    if not low <= number <= high or number != number:  # the last test catches NaN
        raise UserInputError(f"{name} must be from {low} to {high}; got {value}.")
    return number


def _seed(options: dict[str, str]) -> int:
    if "--seed" in options:
        return int(_number("--seed", options["--seed"], 0, MAX_SEED))
    return secrets.randbelow(MAX_SEED + 1)  # a re-roll: a fresh seed every time one is not given


def imagine_params(args: str) -> dict[str, Any]:
    """Parameters of an ImageRequest from `/imagine <prompt> [--seed N] [--size WxH] [--n K] [--negative TEXT] [--steps N] [--guidance G]`."""
    prompt, options = split_options("imagine", args, IMAGINE_OPTIONS)
    if not prompt:
        raise UserInputError("Describe the picture after /imagine, e.g. /imagine a red fox in the snow.")
    width = height = 512
    if "--size" in options:
        match = _SIZE.match(options["--size"])
        if match is None:
            raise UserInputError(f"--size must look like 512x512 (width x height); got {options['--size']!r}.")
        width, height = int(match.group(1)), int(match.group(2))
        for side in (width, height):
            if not 64 <= side <= 1024 or side % 8:
                raise UserInputError(f"--size sides must be 64 to 1024 and multiples of 8; got {width}x{height}.")
    n = int(_number("--n", options.get("--n", "1"), 1, 4))
    params: dict[str, Any] = {"prompt": prompt, "seed": _seed(options), "width": width, "height": height, "n": n,
              "negative": options.get("--negative", "").strip()}
    if "--steps" in options:
        params["steps"] = int(_number("--steps", options["--steps"], 1, MAX_STEPS))
    return params | _guidance(options)


def compose_params(args: str) -> dict[str, Any]:
    """Parameters of a MusicRequest from `/compose <prompt> [--duration S] [--seed N] [--tempo BPM] [--guidance G]`."""
    prompt, options = split_options("compose", args, COMPOSE_OPTIONS)
    if not prompt:
        raise UserInputError("Describe the music after /compose, e.g. /compose calm piano for a rainy day.")
    duration = float(_number("--duration", options.get("--duration", "10"), 1, 30, float))
    tempo = int(_number("--tempo", options["--tempo"], MIN_TEMPO, MAX_TEMPO)) if "--tempo" in options else None
    return {"prompt": prompt, "seed": _seed(options), "duration_s": duration, "tempo": tempo} | _guidance(options)


def _guidance(options: dict[str, str]) -> dict[str, Any]:
    """`guidance` only when given, so the model's own default applies otherwise (and older stored jobs still load)."""
    if "--guidance" not in options:
        return {}
    return {"guidance": float(_number("--guidance", options["--guidance"], 0, MAX_GUIDANCE, float))}
