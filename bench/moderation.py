"""Moderation benchmark: real traffic, our categories, public sets, evasion, calibration, speed.

Reads ../shared/eval/moderation/ (measurement only: nothing there is trained on or tuned against)
and our own probe sets in bench/data, and prints one JSON object; every rate comes with its 95%
Wilson interval. Run: `python bench/moderation.py [--eval PATH] [--limit N] [--skip-speed]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# As the bot runs (bot/__main__.py): torch's threads sleep between steps instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from moderation import Moderator
from moderation.train import calibration_error, load_exemplars

EVAL_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "moderation"
DEFAULT_EVAL = EVAL_DIR / "dev.jsonl"
DATA = Path(__file__).with_name("data")
# Our own probe sets (helpers wrote them without seeing the public sets, the exemplars or the rules;
# never trained on). "dev" and "dev2" guided fixes in earlier releases; "heldout" and "categories"
# (deepfakes, NCII, voice clones and their harmless twins, written before the act model was built)
# are only ever scored.
PROBES = {name: DATA / f"moderation_probe_{name}.jsonl" for name in ("dev", "dev2", "heldout", "categories")}
# Our labels for the real Discord image prompts (ids only; how they were made: docs/moderation.md).
DISCORD_LABELS = DATA / "discord_dev3000_labels.jsonl"
_LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"})
_CYRILLIC = str.maketrans({"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і", "s": "ѕ"})


def leetspeak(text: str) -> str:
    """Digits for letters in every word of four or more letters."""
    return " ".join(word.translate(_LEET) if len(word) >= 4 else word for word in text.split(" "))


def homoglyphs(text: str) -> str:
    """Cyrillic look-alikes for Latin letters, everywhere."""
    return text.translate(_CYRILLIC)


def zero_width(text: str) -> str:
    """A zero-width space between the letters of every word."""
    return " ".join("\u200b".join(word) for word in text.split(" "))


def spacing(text: str) -> str:
    """Letters of every word of four or more letters spaced apart."""
    return " ".join(" ".join(word) if len(word) >= 4 else word for word in text.split(" "))


TRANSFORMS = {"leetspeak": leetspeak, "homoglyphs": homoglyphs, "zero_width": zero_width, "spacing": spacing}


async def verdicts(moderator: Moderator, texts: list[str], kinds: list[str] | None = None) -> list[Any]:
    """Check many texts concurrently (the batcher groups them)."""
    kinds = kinds or ["chat"] * len(texts)
    return await asyncio.gather(*(moderator.check(text, kind) for text, kind in zip(texts, kinds, strict=True)))  # type: ignore[arg-type]


def rate(hits: int, n: int) -> dict[str, Any]:
    """A rate with its sample size and 95% interval."""
    return {"value": round(hits / n, 3) if n else None, "n": n, "ci95": wilson(hits, n)}


async def real_traffic(moderator: Moderator, limit: int = 0) -> dict[str, Any]:
    """ToxicChat (real chat prompts, human labels) and real Discord image prompts (our labels)."""
    report: dict[str, Any] = {}
    toxic_path = EVAL_DIR / "real" / "toxicchat_train_human.jsonl"
    if toxic_path.exists():
        rows = [json.loads(line) for line in toxic_path.read_text(encoding="utf-8").split("\n") if line.strip()]
        if limit:
            rows = random.Random(0).sample(rows, min(limit, len(rows)))
        results = await verdicts(moderator, [row["text"] for row in rows])
        truth = [bool(row["toxicity"]) for row in rows]
        tp = sum(1 for t, v in zip(truth, results, strict=True) if t and v.blocked)
        fp = sum(1 for t, v in zip(truth, results, strict=True) if not t and v.blocked)
        fn = sum(1 for t, v in zip(truth, results, strict=True) if t and not v.blocked)
        negatives = truth.count(False)
        report["toxicchat"] = {
            "n": len(rows), "f1": round(f1(tp, fp, fn), 3), "fpr": rate(fp, negatives), "recall": rate(tp, tp + fn),
            "precision": round(tp / max(tp + fp, 1), 3),
            "jailbreak_recall": rate(sum(1 for r, v in zip(rows, results, strict=True) if r.get("jailbreaking") and v.blocked),
                                     sum(1 for r in rows if r.get("jailbreaking"))),
            "calibration_error": calibration_error(np.clip([v.score for v in results], 0.0, 1.0), np.asarray(truth, dtype=float)),
            "refused_as": dict(Counter(v.category for t, v in zip(truth, results, strict=True) if not t and v.blocked)),
        }  # fmt: skip
    else:
        report["toxicchat"] = f"not measured: no {toxic_path}"
    image_path = EVAL_DIR / "real" / "discord_image_prompts_dev3000.jsonl"
    if image_path.exists() and DISCORD_LABELS.exists():
        labelled = [json.loads(line) for line in DISCORD_LABELS.read_text(encoding="utf-8").split("\n") if line.strip()]
        labels = {row["id"]: row for row in labelled}
        rows = [json.loads(line) for line in image_path.read_text(encoding="utf-8").split("\n") if line.strip()]
        rows = [row for row in rows if row["id"] in labels]
        results = await verdicts(moderator, [row["text"] for row in rows], ["image"] * len(rows))
        pairs = [(labels[row["id"]], v) for row, v in zip(rows, results, strict=True)]
        harmless = [(label, v) for label, v in pairs if not label["block"]]
        people = [(label, v) for label, v in harmless if label["real_person"]]
        harmful = [(label, v) for label, v in pairs if label["block"]]
        report["discord_images"] = {
            "n": len(pairs),
            "refused_but_harmless": rate(sum(v.blocked for _, v in harmless), len(harmless)),
            "refused_but_harmless_real_person": rate(sum(v.blocked for _, v in people), len(people)),
            "harmful_caught": rate(sum(v.blocked for _, v in harmful), len(harmful)),
            "refused_as": dict(Counter(v.category for _, v in harmless if v.blocked)),
            "decided_by": dict(Counter(v.stage for _, v in harmless if v.blocked)),
        }
    else:
        report["discord_images"] = f"not measured: no {image_path} or {DISCORD_LABELS}"
    return report


def f1(tp: int, fp: int, fn: int) -> float:
    """F1 from counts."""
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


async def accuracy(moderator: Moderator, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-source metrics, per-category confusion and evasion recall."""
    results = await verdicts(moderator, [row["text"] for row in rows])
    report: dict[str, Any] = {}
    by_source: dict[str, list[tuple[dict[str, Any], Any]]] = defaultdict(list)
    for row, verdict in zip(rows, results, strict=True):
        by_source[row["source"]].append((row, verdict))
    for source, pairs in sorted(by_source.items()):
        tp = sum(1 for row, v in pairs if row["label"] == "block" and v.blocked)
        fn = sum(1 for row, v in pairs if row["label"] == "block" and not v.blocked)
        fp = sum(1 for row, v in pairs if row["label"] == "allow" and v.blocked)
        tn = sum(1 for row, v in pairs if row["label"] == "allow" and not v.blocked)
        entry: dict[str, Any] = {"n": len(pairs), "recall": round(tp / max(tp + fn, 1), 3)}
        if fp + tn:
            entry |= {"f1": round(f1(tp, fp, fn), 3), "fpr": round(fp / (fp + tn), 3), "precision": round(tp / max(tp + fp, 1), 3)}
        per_category: dict[str, dict[str, Any]] = {}
        for category in sorted({row["category"] for row, _ in pairs}):
            subset = [(row, v) for row, v in pairs if row["category"] == category]
            blocked = Counter(v.category for _, v in subset if v.blocked)
            per_category[category] = {
                "label": subset[0][0]["label"],
                "blocked": f"{sum(blocked.values())}/{len(subset)}",
                "as": dict(blocked.most_common()),
            }
        entry["categories"] = per_category
        report[source] = entry

    blocked_rows = [row for row in rows if row["label"] == "block"]
    base = [v.blocked for v, row in zip(results, rows, strict=True) if row["label"] == "block"]
    base_recall = sum(base) / max(len(base), 1)
    evasion: dict[str, Any] = {"base_recall": round(base_recall, 3)}
    for name, transform in TRANSFORMS.items():
        transformed = await verdicts(moderator, [transform(row["text"]) for row in blocked_rows])
        recall = sum(v.blocked for v in transformed) / max(len(transformed), 1)
        evasion[name] = {"recall": round(recall, 3), "drop_points": round(100 * (base_recall - recall), 1)}
    report["evasion"] = evasion
    return report


async def benign_chat(moderator: Moderator) -> dict[str, Any]:
    """False alarms on friendly chat the classifier never saw: the markov backend's starter corpus,
    line by line and four random lines joined (as people write longer messages)."""
    from bot.backends import markov

    lines = [line for line in markov.starter_corpus().splitlines() if line.strip()]
    generator = random.Random(0)
    joined = [" ".join(generator.sample(lines, 4)) for _ in range(300)]
    report: dict[str, Any] = {}
    for name, texts in (("lines", lines), ("joined_4", joined)):
        results = await verdicts(moderator, texts)
        blocked = [(text, v.category) for text, v in zip(texts, results, strict=True) if v.blocked]
        report[name] = {"n": len(texts), "fpr": round(len(blocked) / len(texts), 3), "as": dict(Counter(c for _, c in blocked))}
    return report


async def probes(moderator: Moderator) -> dict[str, Any]:
    """False-positive rate and recall on our probe sets, overall and per kind of request."""
    report: dict[str, Any] = {}
    for name, path in PROBES.items():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        # The older probe sets use "kind" for their own sub-kinds (everyday, homonym…): all chat.
        kinds = [row["kind"] if row["kind"] in ("chat", "image", "music") else "chat" for row in rows]
        results = await verdicts(moderator, [row["text"] for row in rows], kinds)
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for row, verdict in zip(rows, results, strict=True):
            for key in ("all", row["kind"]):
                counts[key][f"{row['label']}_{'blocked' if verdict.blocked else 'passed'}"] += 1
        report[name] = {
            kind: {
                "fpr": round(c["allow_blocked"] / max(c["allow_blocked"] + c["allow_passed"], 1), 3),
                "recall": round(c["block_blocked"] / max(c["block_blocked"] + c["block_passed"], 1), 3),
                "n": sum(c.values()),
            }
            for kind, c in sorted(counts.items())
        }
        c = counts["all"]
        report[name]["all"]["fpr_95ci"] = wilson(c["allow_blocked"], c["allow_blocked"] + c["allow_passed"])
        report[name]["all"]["recall_95ci"] = wilson(c["block_blocked"], c["block_blocked"] + c["block_passed"])
        if "category" in rows[0]:
            per: dict[str, Counter[str]] = defaultdict(Counter)
            for row, verdict in zip(rows, results, strict=True):
                per[row["category"]]["blocked" if verdict.blocked else "passed"] += 1
            report[name]["by_category"] = {cat: rate(c["blocked"], c["blocked"] + c["passed"]) for cat, c in sorted(per.items())}
        report[name]["contamination"] = contamination(rows)["near_copies"]
    return report


def wilson(hits: int, n: int, z: float = 1.96) -> list[float]:
    """The 95% Wilson interval of a rate: a few hundred prompts cannot tell 0.13 from 0.10."""
    if n == 0:
        return [0.0, 1.0]
    rate = hits / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    spread = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(centre - spread, 0.0), 3), round(min(centre + spread, 1.0), 3)]


def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z0-9']+", text.lower()))


def contamination(rows: list[dict[str, Any]], overlap: float = 0.8) -> dict[str, Any]:
    """Exemplars that (nearly) repeat an evaluation prompt: word-set overlap at or above `overlap`.

    The exemplars must be our own words; a near-copy would make the figures above flatter us.
    """
    evaluation = [(row["text"], _words(row["text"])) for row in rows]
    copies = []
    for text in (example.text for example in load_exemplars()):
        words = _words(text)
        for prompt, prompt_words in evaluation:
            if len(words & prompt_words) / max(len(words | prompt_words), 1) >= overlap:
                copies.append({"exemplar": text, "eval": prompt})
    return {"overlap_at_least": overlap, "near_copies": len(copies), "examples": copies[:10]}


async def loop_stall_ms(moderator: Moderator, texts: list[str], chars: int = 4000) -> float:
    """The longest the event loop went unserved while 4,000-character messages were checked: other chats wait that long."""
    long_text = " ".join(texts)[:chars]
    loop = asyncio.get_running_loop()
    worst, checking = 0.0, True

    async def ticker() -> None:
        nonlocal worst
        last = loop.time()
        while checking:
            await asyncio.sleep(0.001)
            now = loop.time()
            worst, last = max(worst, now - last - 0.001), now

    task = asyncio.create_task(ticker(), name="bench-ticker")
    for offset in range(10):
        await moderator.check(long_text[offset:] + long_text[:offset], "chat")  # no two alike: no cache helps
    checking = False
    await task
    return round(worst * 1000, 1)


async def speed(moderator: Moderator, texts: list[str]) -> dict[str, Any]:
    """Single-message latency (one at a time) and batched throughput (many at once)."""
    for text in texts[:10]:
        await moderator.check(text, "chat")  # warm-up
    latencies = []
    for text in texts[:300]:
        started = time.perf_counter()
        await moderator.check(text, "chat")
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    many = (texts * (1000 // max(len(texts), 1) + 1))[:1000]
    started = time.perf_counter()
    await verdicts(moderator, many)
    elapsed = time.perf_counter() - started
    return {
        "latency_ms": {
            "p50": round(latencies[len(latencies) // 2], 2),
            "p99": round(latencies[int(len(latencies) * 0.99) - 1], 2),
            "max": round(latencies[-1], 2),
        },
        "throughput_msgs_per_s": round(len(many) / elapsed, 1),
        "loop_stall_ms_4000_chars": await loop_stall_ms(moderator, texts),
    }


async def main() -> None:
    """Load the moderator, measure, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval", type=Path, default=DEFAULT_EVAL, help="the unified dev.jsonl")
    parser.add_argument("--limit", type=int, default=0, help="measure on a random sample of N lines")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--model", type=Path, default=None, help="an act model file other than the shipped one")
    args = parser.parse_args()
    from bot.__main__ import SWITCH_INTERVAL_S

    sys.setswitchinterval(SWITCH_INTERVAL_S)  # as the bot runs
    started = time.perf_counter()
    if args.model is not None:
        from moderation import serving

        serving.MODEL_FILE = args.model  # exported on first use, like the shipped one
    moderator = await Moderator.load()
    load_s = time.perf_counter() - started
    if not moderator.available:
        print(json.dumps({"error": moderator.problem}))
        return
    out: dict[str, Any] = {"load_s": round(load_s, 2)}
    if args.eval.exists():
        rows = [json.loads(line) for line in args.eval.read_text(encoding="utf-8").splitlines() if line.strip()]
        if args.limit:
            rows = random.Random(0).sample(rows, min(args.limit, len(rows)))
        out["eval"] = await accuracy(moderator, rows)
        out["contamination"] = contamination(rows)
        texts = [row["text"] for row in rows]
    else:
        out["eval"] = f"no evaluation set at {args.eval}; accuracy not measured"
        texts = ["a watercolor fox in the snow", "how do I kill a python process?", "make a song about summer"]
    out["real_traffic"] = await real_traffic(moderator, args.limit)
    out["benign_chat"] = await benign_chat(moderator)
    out["probes"] = await probes(moderator)
    if not args.skip_speed:
        out["speed"] = await speed(moderator, texts)
    await moderator.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
