"""An optional second moderation stage: ask a guard LLM (Qwen3Guard-Gen, Llama Guard 3, Granite Guardian…) about a request.

The guard runs in-process through `transformers`, or behind an OpenAI-compatible server (Atelier's
GPU host, vLLM…). Either way the answer is read into a `GuardVerdict`; anything that stops a verdict
(unreachable, slow, an answer in no known format) is a `GuardError`, and the caller decides whether
that lets the request through or refuses it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from moderation.policy import Kind

__all__ = ["CATEGORY_NAMES", "Guard", "GuardError", "GuardVerdict", "OpenAIGuard", "TransformersGuard", "build_guard",
           "guard_prompt", "parse_guard_output"]  # fmt: skip

log = logging.getLogger(__name__)

# A guard's categories → the act model's labels (moderation.acts.LABELS), so policy can treat both alike.
# A category with no clear equivalent (Llama Guard's S6 specialized advice and S8 intellectual property,
# Qwen3Guard's Copyright Violation and Jailbreak) is kept as the guard wrote it.
CATEGORY_NAMES: dict[str, str] = {
    # Llama Guard 3 (MLCommons hazard taxonomy).
    "S1": "violence", "S2": "crime", "S3": "sexual", "S4": "minors", "S5": "harassment", "S7": "privacy",
    "S9": "weapons", "S10": "hate", "S11": "self_harm", "S12": "sexual", "S13": "disinfo", "S14": "cyber",
    # Qwen3Guard-Gen. "Unethical Acts" covers hate speech, insults and threats; "Politically Sensitive
    # Topics" is false information about governments, history and public figures.
    "Violent": "violence", "Non-violent Illegal Acts": "crime", "Sexual Content or Sexual Acts": "sexual", "PII": "privacy",
    "Suicide & Self-Harm": "self_harm", "Unethical Acts": "harassment", "Politically Sensitive Topics": "disinfo",
}  # fmt: skip
_NAMES_BY_LOWER = {key.lower(): value for key, value in CATEGORY_NAMES.items()}
# Guards classify requests; a bare picture or music prompt ("a red fox at dawn") reads to them as a statement.
KIND_PREFIX: dict[str, str] = {"chat": "", "output": "", "image": "Make a picture of: ", "music": "Make music: "}
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_NEW_TOKENS = 20
_QWEN = re.compile(r"^safety:\s*(safe|unsafe|controversial)\b(.*)$", re.IGNORECASE | re.DOTALL)
_QWEN_CATEGORIES = re.compile(r"^categories:\s*(.*)$", re.IGNORECASE | re.MULTILINE)
_LLAMA_CODE = re.compile(r"\bS\d{1,2}\b", re.IGNORECASE)
# Granite Guardian 3.3 thinks first and wraps its answer: "<think>…</think>\n<score> yes </score>".
_THINKING = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"</?score>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """What the guard model said: safe or not, its categories, and its raw text."""

    safe: bool
    categories: tuple[str, ...]
    raw: str


class GuardError(RuntimeError):
    """The guard could not give a verdict (unreachable, timed out, or unparseable answer)."""


def _our_names(labels: list[str]) -> tuple[str, ...]:
    """The guard's labels in our names (unknown ones as written), each once, in the guard's order."""
    return tuple(dict.fromkeys(_NAMES_BY_LOWER.get(label.lower(), label) for label in labels if label))


def _snippet(text: str) -> str:
    """One short line of a model's answer, for an error message."""
    line = " ".join(text.split())
    return line[:80] + ("…" if len(line) > 80 else "")


def parse_guard_output(text: str, *, strict: bool = False) -> GuardVerdict:
    """Read Llama Guard ("safe" / "unsafe\\nS1,S10"), Qwen3Guard-Gen ("Safety: Unsafe\\nCategories: Violent"), Granite Guardian ("Yes"/"No") answers; raise GuardError otherwise.

    Qwen3Guard's "Controversial" counts as unsafe only when `strict`.
    """
    answer = _TAGS.sub(" ", _THINKING.sub(" ", text)).strip()
    if match := _QWEN.match(answer):
        level = match.group(1).lower()
        listed = _QWEN_CATEGORIES.search(match.group(2))
        labels = [label.strip() for label in listed.group(1).split(",")] if listed else []
        categories = _our_names([label for label in labels if label.lower() != "none"])
        return GuardVerdict(level == "safe" or (level == "controversial" and not strict), categories, text)
    first, _, rest = answer.partition("\n")
    # The whole first line must be the verdict word: "No idea what you mean" from a confused model is not "No".
    word = first.strip().rstrip(".").strip().lower()
    if word == "safe":
        return GuardVerdict(True, (), text)
    if word == "unsafe":
        return GuardVerdict(False, _our_names([code.upper() for code in _LLAMA_CODE.findall(rest)]), text)
    if word in ("yes", "no"):  # Granite Guardian (and ShieldGemma): "Yes" means the risk is present
        return GuardVerdict(word == "no", (), text)
    raise GuardError(f"the guard's answer is not a verdict: '{_snippet(text)}'")


def request_text(text: str, kind: str) -> str:
    """The user's text as the guard should read it: a picture or music prompt phrased as a request."""
    if kind not in KIND_PREFIX:
        raise ValueError(f"kind must be one of {', '.join(KIND_PREFIX)}, not '{kind}'")
    return KIND_PREFIX[kind] + text


def guard_prompt(tokenizer: Any, text: str, kind: str) -> str:
    """The guard's own chat template around one user turn holding the (request-phrased) text."""
    if not getattr(tokenizer, "chat_template", None):
        raise GuardError("the guard model has no chat template, so its prompt cannot be built")
    messages = [{"role": "user", "content": request_text(text, kind)}]
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


class Guard(Protocol):
    """A guard model that judges one text at a time."""

    name: str

    async def scan(self, text: str, kind: Kind) -> GuardVerdict:
        """The guard's verdict on `text` (a chat message, an image or music prompt, or the bot's output)."""
        ...

    async def close(self) -> None:
        """Release what the guard holds (a session, a thread)."""
        ...


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else error.__class__.__name__


def _offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


class TransformersGuard:
    """A guard model run in this process: greedy decoding in a worker thread, one scan at a time."""

    def __init__(self, model: Any, tokenizer: Any, name: str, max_new_tokens: int = DEFAULT_NEW_TOKENS, strict: bool = False) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_new_tokens, self.strict = max_new_tokens, strict
        # A threading lock, taken inside the worker: a cancelled scan's thread runs on, and the next must wait for it.
        self._lock = threading.Lock()
        # Its own thread: waiting scans must not fill the default pool that reading and the store share.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atelier-guard")
        limit = getattr(model.config.get_text_config(), "max_position_embeddings", None)
        self.context_tokens = limit if isinstance(limit, int) and limit > 0 else None

    @classmethod
    def load(cls, model: str, device: str = "cpu", max_new_tokens: int = DEFAULT_NEW_TOKENS, *, strict: bool = False) -> TransformersGuard:
        """Tokenizer and model from a local folder or hub id (blocking: call it off the event loop); GuardError saying why not."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        path = Path(model).expanduser()
        if not path.is_dir() and (model.startswith(("/", ".", "~")) or model.count("/") > 1):  # a path, not an org/name hub id
            raise GuardError(f"there is no guard model folder at {model}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device.startswith("cuda") and not torch.cuda.is_available():
            raise GuardError("the guard was given device cuda, but no GPU is visible to this process")
        dtype = torch.float32 if not device.startswith("cuda") else torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        transformers_logging.disable_progress_bar()  # progress bars on stderr are noise in a server's log
        local_only = path.is_dir() or _offline()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path) if path.is_dir() else model, local_files_only=local_only)
            network = AutoModelForCausalLM.from_pretrained(str(path) if path.is_dir() else model, local_files_only=local_only, dtype=dtype)
            network.to(device).eval()
        except (OSError, ValueError, KeyError, TypeError, ImportError, RuntimeError) as error:  # missing files, not a causal LM, a bad device
            raise GuardError(f"could not load the guard model {model} ({_first_line(error)})") from None
        if not getattr(tokenizer, "chat_template", None):
            raise GuardError(f"the guard model {model} has no chat template, so its prompt cannot be built")
        return cls(network, tokenizer, model, max_new_tokens, strict)

    def _generate(self, prompt: str) -> str:
        import torch

        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)  # the template has its own BOS
        length = inputs["input_ids"].shape[1]
        if self.context_tokens is not None and length + self.max_new_tokens > self.context_tokens:
            raise GuardError(f"the text is too long for the guard model ({length} tokens; it reads {self.context_tokens})")
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with self._lock, torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad)
        return str(self.tokenizer.decode(output[0, length:], skip_special_tokens=True))

    async def scan(self, text: str, kind: Kind) -> GuardVerdict:
        """The guard's verdict on `text`; GuardError when the model fails or answers in no known format."""
        prompt = guard_prompt(self.tokenizer, text, kind)
        try:
            answer = await asyncio.get_running_loop().run_in_executor(self._executor, self._generate, prompt)
        except GuardError:
            raise
        except Exception as error:  # CUDA out of memory, a broken checkpoint: no verdict, logged for the admin
            log.exception("guard model %s failed", self.name)
            raise GuardError(f"the guard model failed ({error.__class__.__name__})") from None
        return parse_guard_output(answer, strict=self.strict)

    async def close(self) -> None:
        """Stop the guard's thread once a scan in hand is done (the weights go with the process)."""
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)


class OpenAIGuard:
    """A guard model behind an OpenAI-compatible /chat/completions endpoint."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 max_tokens: int = DEFAULT_NEW_TOKENS, *, strict: bool = False) -> None:  # fmt: skip
        self.base_url, self.name = base_url.rstrip("/"), model
        self.timeout_s, self.max_tokens, self.strict = timeout_s, max_tokens, strict
        parts = urlsplit(self.base_url)
        # For messages: host and port only, never user:password@, the key or the query.
        self.host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # in logs and test output: the model and host, never a header that holds the key
        return f"OpenAIGuard({self.name!r} at {self.host})"

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop (a session built outside one is bound to no loop).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def scan(self, text: str, kind: Kind) -> GuardVerdict:
        """The guard's verdict on `text`; GuardError on a timeout, a refusal, or an answer that is not a verdict."""
        body = {"model": self.name, "messages": [{"role": "user", "content": request_text(text, kind)}],
                "max_tokens": self.max_tokens, "temperature": 0}  # fmt: skip
        where = f"the guard server at {self.host}"
        # Only our own words below: an aiohttp error's text can carry the request it failed on.
        try:
            async with self._client().post(f"{self.base_url}/chat/completions", json=body) as response:
                if response.status != 200:
                    raise GuardError(f"{where} answered {response.status}")
                data = await response.json(content_type=None)
        except TimeoutError:
            raise GuardError(f"{where} did not answer within {self.timeout_s:g}s") from None
        except aiohttp.ClientError as error:
            raise GuardError(f"{where} is unreachable ({error.__class__.__name__})") from None
        except ValueError:
            raise GuardError(f"{where} answered with something that is not JSON") from None
        try:
            answer = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            answer = None
        if not isinstance(answer, str):
            raise GuardError(f"{where} answered with something that is not a chat completion")
        return parse_guard_output(answer, strict=self.strict)

    async def close(self) -> None:
        """Close the HTTP session, if one was opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None


_KNOWN = {"transformers": {"type", "model", "device", "max_new_tokens", "strict"},
          "openai": {"type", "model", "base_url", "timeout_s", "max_tokens", "strict", "api_key_env"}}  # fmt: skip


def build_guard(spec: Mapping[str, object], api_key: str | None = None) -> Guard:
    """From a config mapping {"type": "transformers"|"openai", "model": ..., "base_url": ..., "device": ..., "timeout_s": ...}.

    A transformers guard loads its model here (blocking). `api_key_env` is accepted for the caller, which resolves it into `api_key`.
    """
    kind = spec.get("type")
    if kind not in _KNOWN:
        raise GuardError(f"guard type must be transformers or openai, not '{kind}'")
    unknown = set(spec) - _KNOWN[str(kind)]
    if unknown:
        raise GuardError(f"unknown {kind} guard option(s): {', '.join(sorted(unknown))} (known: {', '.join(sorted(_KNOWN[str(kind)]))})")
    model = spec.get("model")
    if not isinstance(model, str) or not model:
        raise GuardError(f"the {kind} guard needs `model:` (a hub id, a local folder, or the served model's name)")
    strict = spec.get("strict", False)
    if not isinstance(strict, bool):
        raise GuardError("guard `strict` must be true or false")
    tokens = int(_positive(spec, "max_new_tokens" if kind == "transformers" else "max_tokens", DEFAULT_NEW_TOKENS, whole=True))
    if kind == "transformers":
        device = spec.get("device", "cpu")
        if not isinstance(device, str):
            raise GuardError("guard `device` must be cpu, cuda or auto")
        return TransformersGuard.load(model, device, tokens, strict=strict)
    base_url = spec.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise GuardError("the openai guard needs `base_url:`, e.g. http://gpu-host:8000/v1")
    return OpenAIGuard(base_url, model, api_key, _positive(spec, "timeout_s", DEFAULT_TIMEOUT_S), tokens, strict=strict)


def _positive(spec: Mapping[str, object], key: str, default: float, whole: bool = False) -> float:
    """A positive number (a whole one if `whole`) from the spec, or GuardError naming the key; YAML's true is not 1 here."""
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or value <= 0:
        raise GuardError(f"guard `{key}` must be a positive {'whole ' if whole else ''}number, not {value!r}")
    return float(value)
