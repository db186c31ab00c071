"""`markov`: the embedded, offline text backend, a word-level Markov chatbot in the MegaHAL tradition.

It keeps order-2 chains in both directions, seeds a reply on a keyword of the user's message,
grows it forwards and backwards, and keeps the most on-topic of several candidates. It learns
from what users say, per workspace (one server's chat never leaks into another's), and can
unlearn a user's words exactly because the chains are plain counts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from importlib.resources import files
from typing import Any, TypeVar

from bot.backends.base import TextOptions
from bot.config import BackendConfig
from bot.messages import Turn

log = logging.getLogger(__name__)
T = TypeVar("T")
TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[.!?,;:]")
BOUNDARY = "\x00"
SENTENCE_END = frozenset(".!?")
PUNCTUATION = frozenset(".!?,;:")
MAX_SIDE = 30
STOPWORDS = frozenset(
    """a about after again all also am an and any are as at be been but by can could did do does
    doing for from get got had has have he her here hers him his how i i'm if in into is it it's its
    just me more most my no not now of off on once only or our out over own please same she should
    so some such than that that's the their them then there these they this those to too under up
    very was we were what when where which while who whom why will with would you you're your yours
    yes yeah ok okay oh well really much many one thing things let's know""".split()
)
# Greetings and small talk are answered in kind, but only when nothing more specific was said.
SMALL_TALK = frozenset("hi hey hello thanks thank bye goodbye morning evening night".split())
Context = tuple[str, str]
Table = dict[Context, dict[str, int]]


def tokenize(text: str) -> list[str]:
    """Lower-cased words and sentence punctuation."""
    return TOKEN.findall(text.lower())


def detokenize(tokens: Sequence[str], proper: frozenset[str] = frozenset()) -> str:
    """Join tokens into a sentence with normal spacing and capitals (`proper` names keep theirs)."""
    out: list[str] = []
    capital = True
    for token in tokens:
        word = token
        if word == "i" or word.startswith("i'") or word in proper:
            word = word[0].upper() + word[1:]
        if capital and word[:1].isalpha():
            word = word[0].upper() + word[1:]
            capital = False
        if token in PUNCTUATION and out:
            out[-1] += word
        else:
            out.append(word)
        if token in SENTENCE_END:
            capital = True
    text = " ".join(out)
    return text if not text or text[-1] in SENTENCE_END else text + "."


class Chains:
    """Counts for one body of text: order-2 forward and backward chains plus word follow-ups."""

    def __init__(self) -> None:
        self.forward: Table = {}
        self.backward: Table = {}
        self.follows: dict[str, dict[str, int]] = {}
        self.words: dict[str, int] = {}

    @staticmethod
    def _bump(table: dict[Any, dict[str, int]], key: object, token: str, delta: int) -> None:
        counts = table.setdefault(key, {})
        value = counts.get(token, 0) + delta
        if value > 0:
            counts[token] = value
        else:
            counts.pop(token, None)
            if not counts:
                del table[key]

    def add(self, text: str, delta: int = 1) -> None:
        """Learn (delta=1) or unlearn (delta=-1) every sentence of `text`."""
        sentence: list[str] = []
        for token in tokenize(text) + ["."]:
            sentence.append(token)
            if token in SENTENCE_END:
                if len(sentence) > 1:
                    self._add_sentence(sentence, delta)
                sentence = []

    def _add_sentence(self, sentence: list[str], delta: int) -> None:
        for word in sentence:
            if word not in PUNCTUATION:
                value = self.words.get(word, 0) + delta
                if value > 0:
                    self.words[word] = value
                else:
                    self.words.pop(word, None)
        padded = [BOUNDARY, BOUNDARY, *sentence, BOUNDARY]
        for i in range(2, len(padded)):
            self._bump(self.forward, (padded[i - 2], padded[i - 1]), padded[i], delta)
        padded = [BOUNDARY, BOUNDARY, *reversed(sentence), BOUNDARY]
        for i in range(2, len(padded)):
            self._bump(self.backward, (padded[i - 2], padded[i - 1]), padded[i], delta)
        for a, b in zip(sentence, [*sentence[1:], BOUNDARY]):
            self._bump(self.follows, a, b, delta)


class Brain:
    """The starter corpus plus one learned overlay per scope; generation reads both."""

    def __init__(self, corpus: str) -> None:
        self.base = Chains()
        for line in corpus.splitlines():
            if line.strip():
                self.base.add(line)
        # Words the corpus capitalises mid-sentence are names (Atelier, Monday) and stay capitalised.
        self.proper = frozenset(word.lower() for word in re.findall(r"(?<=[a-z,] )([A-Z][a-z]+)", corpus))
        self.scopes: dict[str, Chains] = {}

    def learn(self, scope: str, text: str, delta: int = 1) -> None:
        """Add (or with delta=-1, remove) a user's text in a scope."""
        self.scopes.setdefault(scope, Chains()).add(text, delta)

    def _layers(self, scope: str) -> tuple[Chains, ...]:
        overlay = self.scopes.get(scope)
        return (self.base, overlay) if overlay is not None else (self.base,)

    @staticmethod
    def _options(layers: tuple[Chains, ...], pick: str, key: object) -> dict[str, int]:
        found = [table for layer in layers if (table := getattr(layer, pick).get(key))]
        if len(found) < 2:
            return found[0] if found else {}
        merged = dict(found[0])
        for token, count in found[1].items():
            merged[token] = merged.get(token, 0) + count
        return merged

    def _walk(self, layers: tuple[Chains, ...], pick: str, context: Context, rng: random.Random) -> tuple[list[str], float]:
        """Extend from `context` until a sentence boundary; return tokens and their surprise."""
        out: list[str] = []
        surprise = 0.0
        a, b = context
        for _ in range(MAX_SIDE):
            options = self._options(layers, pick, (a, b))
            if not options:
                break
            total = sum(options.values())
            token = rng.choices(list(options), weights=list(options.values()))[0]
            surprise -= math.log2(options[token] / total)
            if token == BOUNDARY:
                break
            out.append(token)
            a, b = b, token
        return out, surprise

    def keywords(self, text: str, scope: str) -> list[str]:
        """Words of `text` worth answering about that the brain knows, rarest first."""
        layers = self._layers(scope)
        counts: dict[str, int] = {}
        for word in tokenize(text):
            if word in STOPWORDS or word in PUNCTUATION or len(word) < 2:
                continue
            seen = sum(layer.words.get(word, 0) for layer in layers)
            if seen:
                counts[word] = seen
        specific = [word for word in counts if word not in SMALL_TALK]
        return sorted(specific or counts, key=counts.__getitem__)

    def candidate(self, keyword: str | None, scope: str, rng: random.Random) -> tuple[list[str], float]:
        """One reply grown from `keyword` in both directions (or from a sentence start)."""
        layers = self._layers(scope)
        if keyword is None:
            return self._walk(layers, "forward", (BOUNDARY, BOUNDARY), rng)
        follows = self._options(layers, "follows", keyword)
        if not follows:
            return self._walk(layers, "forward", (BOUNDARY, BOUNDARY), rng)
        nxt = rng.choices(list(follows), weights=list(follows.values()))[0]
        head: list[str] = []
        tail: list[str] = []
        surprise = 0.0
        if nxt != BOUNDARY:
            tail, surprise = self._walk(layers, "forward", (keyword, nxt), rng)
            tail = [nxt, *tail]
        back, back_surprise = self._walk(layers, "backward", (nxt, keyword), rng)
        head = list(reversed(back))
        return [*head, keyword, *tail], surprise + back_surprise

    def reply(self, text: str, scope: str, rng: random.Random, budget_s: float | None = 0.004, tries: int = 8) -> str:
        """The best of several candidates: most keywords covered, then most informative, not too long.

        `budget_s` stops early on a slow machine; None tries every candidate (a seeded reply must not
        depend on how busy the machine is).
        """
        keywords = self.keywords(text, scope)
        heard = tokenize(text)
        deadline = time.perf_counter() + budget_s if budget_s is not None else math.inf
        best: tuple[float, list[str]] | None = None
        for attempt in range(tries):
            seed_word = keywords[attempt % len(keywords)] if keywords else None
            tokens, surprise = self.candidate(seed_word, scope, rng)
            if not tokens or tokens == heard:
                continue
            covered = len(set(tokens) & set(keywords))
            length_penalty = max(0, len(tokens) - 24) * 0.5
            score = 4.0 * covered + surprise / math.sqrt(len(tokens)) - length_penalty
            if best is None or score > best[0]:
                best = (score, tokens)
            if time.perf_counter() > deadline:
                break
        return detokenize(best[1], self.proper) if best else "Tell me more."


class MarkovBackend:
    """The `markov` TextBackend: instant, offline, and it learns from the chat it sees."""

    name = "markov"
    context_tokens = 4096

    def __init__(self, brain: Brain, seed: int | None = None) -> None:
        self.brain = brain
        # Used only on the brain's thread; a seed makes a whole session reproducible.
        self._rng = random.Random(seed)
        self._seeded = seed is not None
        # One thread owns the brain, so learning and generating never race.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atelier-markov")

    def count_tokens(self, text: str) -> int:
        """Roughly the words in `text`: the chains read only the last message, so an estimate will do."""
        return text.count(" ") + 1

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def stream(self, turns: Sequence[Turn], options: TextOptions) -> AsyncIterator[str]:
        """Answer the last user turn in one piece: it exists in full within a millisecond, so
        chunking it would only add event-loop work per message."""
        prompt = next((turn.text for turn in reversed(turns) if turn.role == "user"), "")
        seeded = options.seed is not None or self._seeded
        rng = random.Random(options.seed) if options.seed is not None else self._rng
        text: str = await self._call(self.brain.reply, prompt, options.scope, rng, None if seeded else 0.004)
        yield " ".join(text.split(" ")[: max(1, options.max_tokens)])

    async def learn(self, texts: Sequence[tuple[str, str]]) -> None:
        """Learn from (scope, text) pairs, queued behind any reply being generated.

        Not awaited: the brain's single thread runs jobs in order, so the next reply still
        sees this learning, and the chat does not wait a round trip for it.
        """
        future = self._executor.submit(self._apply, list(texts), 1)
        future.add_done_callback(_log_failure)

    async def forget(self, texts: Sequence[tuple[str, str]]) -> None:
        """Unlearn (scope, text) pairs learned before."""
        await self._call(self._apply, list(texts), -1)

    def _apply(self, texts: list[tuple[str, str]], delta: int) -> None:
        for scope, text in texts:
            self.brain.learn(scope, text, delta)

    async def close(self) -> None:
        """Stop the backend's thread."""
        self._executor.shutdown(wait=False)


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("markov learning failed", exc_info=future.exception())


def starter_corpus() -> str:
    """The sentences this project wrote to give the bot something to say on day one."""
    return files("bot.backends").joinpath("markov_corpus.txt").read_text(encoding="utf-8")


async def create(config: BackendConfig) -> MarkovBackend:
    """Factory for `type: markov`; options: `corpus` (an extra text file to learn from), `seed`."""
    corpus = starter_corpus()
    extra = config.options.get("corpus")
    if extra:
        with open(extra, encoding="utf-8") as handle:
            corpus += "\n" + handle.read()
    brain = await asyncio.to_thread(Brain, corpus)
    seed = config.options.get("seed")
    return MarkovBackend(brain, seed=int(seed) if seed is not None else None)
