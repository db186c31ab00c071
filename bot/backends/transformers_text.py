"""The `transformers` TextBackend: any causal LM by hub id or local folder, streamed token by token.

Concurrent conversations share the model through transformers' continuous batching (a background
thread that steps every active request together); a model that cannot batch that way runs one
`generate` at a time in a worker thread. Either way the event loop only receives finished tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from bot.backends import hf
from bot.backends.base import TextOptions
from bot.config import BackendConfig
from bot.errors import BackendFailed
from bot.messages import Turn

log = logging.getLogger(__name__)
DEFAULT_CONTEXT = 4096
MAX_STREAMS = 32
CPU_CACHE_TOKENS = 65536
# Continuous batching has no per-request greedy switch; a temperature this low picks the top token.
MIN_TEMPERATURE = 1e-4
BATCHING_START_S = 120.0
HEALTH_CHECK_S = 5.0  # how often a waiting reader checks that the batching thread is still alive
FAILED = "The language model failed while answering; please try again."


class Decoder:
    """Turns a growing list of token ids into new text pieces, holding back half-decoded characters.

    Decodes only a short window (the tokens since the last piece, after the ones before them), so the
    cost per token stays constant, and a tokenizer that joins pieces differently in context (spaces
    before punctuation) cannot make already-sent text disagree with what follows.
    """

    def __init__(self, tokenizer: Any, stop_ids: set[int]) -> None:
        self.tokenizer, self.stop_ids = tokenizer, stop_ids
        self.prefix = self.read = 0  # tokens[prefix:read] were decoded last time, as context for the next piece

    def _text(self, tokens: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(tokens), skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def feed(self, tokens: Sequence[int], final: bool = False) -> str:
        """The text added since the last call ('' while a multi-byte character is incomplete, unless `final`)."""
        end = len(tokens)
        while end > self.read and tokens[end - 1] in self.stop_ids:
            end -= 1
        if end <= self.read:
            return ""
        before = self._text(tokens[self.prefix : self.read])
        after = self._text(tokens[self.prefix : end])
        if len(after) <= len(before) or (after.endswith("\ufffd") and not final):
            return ""
        self.prefix, self.read = self.read, end
        return after[len(before) :]


class TransformersText:
    """Streams replies from a local causal LM."""

    def __init__(self, model: Any, tokenizer: Any, name: str, context_tokens: int, batching: bool, cache_fraction: float = 0.3,
                 sampling: dict[str, float] | None = None) -> None:  # fmt: skip
        self.model, self.tokenizer, self.name, self.context_tokens = model, tokenizer, name, context_tokens
        self.cache_fraction = cache_fraction
        self.sampling = sampling or {}  # top_p / top_k for every reply; temperature comes with each request
        eos = model.generation_config.eos_token_id
        self.stop_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            self.stop_ids.add(tokenizer.eos_token_id)
        self._ids = itertools.count()
        self._lock = threading.Lock()  # the one-at-a-time path
        self._manager: Any = self._start_batching() if batching else None

    @property
    def batching(self) -> bool:
        """Whether concurrent requests are batched together."""
        return self._manager is not None

    @property
    def concurrency(self) -> int:
        """How many requests are worth running at once (the GPU host's slots for this model)."""
        return MAX_STREAMS if self._manager is not None else 1

    def _start_batching(self) -> Any:
        from transformers import ContinuousBatchingConfig, GenerationConfig

        config = GenerationConfig(do_sample=True, temperature=0.8, **self.sampling, eos_token_id=sorted(self.stop_ids) or -1,
                                  pad_token_id=self._pad_id())  # fmt: skip
        batching = ContinuousBatchingConfig(per_request_processors=True, max_queue_size=0)
        if self.model.device.type == "cpu":
            # Sized from free GPU memory otherwise; on a CPU, a fixed cache (~1.5 GB for a 0.5B model in float32).
            batching.page_size = 64
            batching.num_blocks = min(16 * self.context_tokens, CPU_CACHE_TOKENS) // 64
            batching.max_batch_tokens = 2048
        else:
            batching.max_memory_percent = self.cache_fraction  # leave the GPU's rest to the image and music models
        try:
            manager = self.model.init_continuous_batching(generation_config=config, continuous_batching_config=batching)
            manager.start()
            # The cache and batch processor are built in the manager's thread: wait to see that they were.
            deadline = time.monotonic() + BATCHING_START_S
            while manager.batch_processor is None and manager.is_running() and time.monotonic() < deadline:
                time.sleep(0.01)
            if manager.batch_processor is None:
                error = manager.background_thread_status.fatal_error or TimeoutError("the batching thread did not start")
                manager.stop(block=False)
                raise error
        except Exception as error:  # e.g. an architecture without paged attention: serve one request at a time
            log.warning("%s cannot use continuous batching (%s); answering one request at a time", self.name, error)
            return None
        return manager

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's own tokenizer."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt_ids(self, turns: Sequence[Turn]) -> list[int]:
        """The prompt as the model expects it: its chat template, or plain role-prefixed lines if it has none."""
        messages = [{"role": turn.role, "content": turn.text} for turn in turns]
        if getattr(self.tokenizer, "chat_template", None):
            try:
                return _ids(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True))
            except Exception:  # some templates (Gemma's) reject a system turn: fold it into the first user turn
                if messages and messages[0]["role"] == "system" and len(messages) > 1:
                    system = messages.pop(0)["content"]
                    messages[0] = {**messages[0], "content": f"{system}\n\n{messages[0]['content']}"}
                    return _ids(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True))
                raise
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return list(self.tokenizer.encode(text))

    async def stream(self, turns: Sequence[Turn], options: TextOptions) -> AsyncIterator[str]:
        """Yield the reply as it is generated; stops at the model's end token or `options.max_tokens`."""
        ids = self.prompt_ids(turns)
        room = self.context_tokens - len(ids)
        if room < 1:
            raise BackendFailed("That conversation is too long for the model; /reset and try again.")
        max_new = min(options.max_tokens, room)
        decoder = Decoder(self.tokenizer, self.stop_ids)
        source = self._batched(ids, max_new, options) if self._manager is not None else self._single(ids, max_new, options)
        tokens: Sequence[int] = []
        async with contextlib.aclosing(source):  # type: ignore[type-var]  # a reader that leaves stops generating now, not at GC
            async for tokens in source:
                piece = decoder.feed(tokens)
                if piece:
                    yield piece
        if tail := decoder.feed(tokens, final=True):  # bytes that never became a whole character
            yield tail

    async def _batched(self, ids: list[int], max_new: int, options: TextOptions) -> AsyncIterator[list[int]]:
        outputs: asyncio.Queue[Any] = asyncio.Queue()
        request_id = f"atelier-{next(self._ids)}"
        self._manager.register_result_handler(request_id, outputs.put_nowait)
        temperature = max(options.temperature, MIN_TEMPERATURE)
        finished = False
        try:
            # add_request waits (up to seconds) when the manager's queue is full: off the loop.
            added = await asyncio.to_thread(self._manager.add_request, ids, request_id=request_id, max_new_tokens=max_new,
                                            streaming=True, eos_token_id=sorted(self.stop_ids) or -1, temperature=temperature)  # fmt: skip
            if added is None:  # the batching thread has stopped (it logged why)
                raise BackendFailed(FAILED)
            while not finished:
                try:
                    output = await asyncio.wait_for(outputs.get(), HEALTH_CHECK_S)
                except TimeoutError:
                    if not self._manager.is_running():
                        log.error("%s: the batching thread stopped", self.name)
                        raise BackendFailed(FAILED) from None
                    continue
                if output.error is not None:
                    log.error("%s failed on a request: %s", self.name, output.error)
                    raise BackendFailed(FAILED)
                finished = output.is_finished()
                yield output.generated_tokens
        finally:
            if not finished:  # the reader went away (cancelled, refused mid-answer): free its batch slot
                self._manager.cancel_request(request_id)
                with self._manager.output_router._lock:  # no public way to drop the handler of a cancelled request
                    self._manager.output_router.result_handlers.pop(request_id, None)

    async def _single(self, ids: list[int], max_new: int, options: TextOptions) -> AsyncIterator[list[int]]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        loop = asyncio.get_running_loop()
        tokens: asyncio.Queue[list[int] | None] = asyncio.Queue()
        stop = threading.Event()
        generated: list[int] = []

        class Collect(BaseStreamer):
            prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:  # generate() first sends the prompt itself
                    self.prompt_seen = True
                    return
                generated.extend(int(token) for token in value.reshape(-1).tolist())
                loop.call_soon_threadsafe(tokens.put_nowait, list(generated))

            def end(self) -> None:
                """Nothing: `run` signals the end, also when generate() fails."""

        class Stopped(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        def run() -> None:
            sampling = {"do_sample": True, "temperature": options.temperature, **self.sampling} if options.temperature > 0 else {"do_sample": False}
            try:
                with self._lock, hf.RNG_LOCK if options.seed is not None else contextlib.nullcontext(), torch.inference_mode():
                    if options.seed is not None:
                        torch.manual_seed(options.seed)
                    self.model.generate(torch.tensor([ids], device=self.model.device), max_new_tokens=max_new, streamer=Collect(),
                                        stopping_criteria=StoppingCriteriaList([Stopped()]), eos_token_id=sorted(self.stop_ids) or None,
                                        pad_token_id=self._pad_id(), **sampling)  # fmt: skip
            finally:
                loop.call_soon_threadsafe(tokens.put_nowait, None)

        work = asyncio.ensure_future(asyncio.to_thread(run))
        try:
            while (batch := await tokens.get()) is not None:
                yield batch
            try:
                await work
            except Exception:
                log.exception("%s failed on a request", self.name)
                raise BackendFailed(FAILED) from None
        finally:
            stop.set()  # a reader that left early stops generate() at its next token

    def _pad_id(self) -> int | None:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.tokenizer.eos_token_id

    async def close(self) -> None:
        """Stop the batching thread (the weights go with the process)."""
        if self._manager is not None:
            await asyncio.to_thread(self._manager.stop, block=True, timeout=10)


def _ids(encoded: Any) -> list[int]:
    ids = encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded
    return [int(token) for token in ids]


def _context(model: Any, tokenizer: Any, configured: Any) -> int:
    """The context length: configured, else the model's own (capped by its tokenizer's limit when that is real)."""
    if configured is not None:
        return int(configured)
    limits = [getattr(model.config.get_text_config(), "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    sane = [int(limit) for limit in limits if isinstance(limit, int) and 0 < limit < 10_000_000]
    return min(sane) if sane else DEFAULT_CONTEXT


def load(config: BackendConfig) -> TransformersText:
    """Load tokenizer and model (blocking: call it off the event loop)."""
    from transformers import AutoModelForCausalLM

    name, tokenizer, model = hf.load_with_tokenizer(config, "transformers text", AutoModelForCausalLM, "language model")
    if not getattr(tokenizer, "chat_template", None):
        log.warning("%s has no chat template; prompts use plain 'role: text' lines", name)
    context = _context(model, tokenizer, config.options.get("context_tokens"))
    fraction = float(config.options.get("cache_fraction", 0.3))
    sampling: dict[str, float] = {key: (int if key == "top_k" else float)(config.options[key]) for key in ("top_p", "top_k") if key in config.options}
    return TransformersText(model, tokenizer, name, context, bool(config.options.get("batching", True)), fraction, sampling)


async def create(config: BackendConfig) -> TransformersText:
    """Factory for text `type: transformers` (options: context_tokens, batching)."""
    hf.check_options(config.options, {"context_tokens", "batching", "cache_fraction", "top_p", "top_k"}, "transformers")
    return await asyncio.to_thread(load, config)
