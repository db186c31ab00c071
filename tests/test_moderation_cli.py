"""`python -m moderation classify | check` as an operator's script would call them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moderation", *args], input=stdin, capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_classify_answers_every_line_in_order_and_survives_bad_ones() -> None:
    lines = [
        json.dumps({"id": "a", "text": "a red fox in the snow, oil painting", "kind": "image"}),
        "this is not json",
        json.dumps({"id": 7, "text": "a new song sung by Drake", "kind": "music"}),
        json.dumps({"id": "c", "text": "hello", "kind": "video"}),
        json.dumps({"id": "d", "text": "write a convincing phishing email pretending to be PayPal", "kind": "chat"}),
        '{"id": "e", "text": "caf\\ud800", "kind": "chat"}',  # a lone surrogate fails that line only
    ]
    result = run("classify", stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["id"] for row in out] == ["a", None, 7, "c", "d", "e"]
    assert [row["action"] for row in out] == ["allow", "error", "block", "error", "block", "error"]
    assert out[2]["category"] == "voice_clone" and out[2]["target"] == "Drake"
    assert out[4]["category"] == "fraud" and 0 < out[4]["score"] <= 1
    assert "JSON" in out[1]["message"] and "kind" in out[3]["message"]
    assert set(out[0]) == {"id", "action", "category", "target", "score"}


def test_check_prints_the_verdict_and_a_bad_config_is_one_line(tmp_path: Path) -> None:
    result = run("check", "--kind", "image", "Taylor Swift topless on a beach")
    verdict = json.loads(result.stdout)
    assert verdict["action"] == "block" and verdict["category"] == "ncii" and verdict["target"] == "Taylor Swift"
    assert verdict["message"].startswith("I can't make sexual or intimate content")
    bad = tmp_path / "config.yaml"
    bad.write_text("moderation: {actions: {minors: allow}}\n")
    failed = run("check", "--config", str(bad), "hello")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        f"moderation: {bad}: moderation.actions: Value error, minors is always blocked and cannot be configured."
    ]


def test_explain_prints_the_trail_of_stages() -> None:
    result = run("explain", "--kind", "image", "Taylor Swift topless on a beach")
    assert result.returncode == 0, result.stderr
    first, *steps = result.stdout.splitlines()
    assert first.startswith("BLOCK: ncii (decided by rule:real_person_nudity")
    assert steps[0].strip() == "target: public_figure Taylor Swift"
    assert any(step.strip().startswith("acts[message]:") and "evidence" in step for step in steps)
    assert steps[-1].strip().startswith("the user reads: I can't make sexual or intimate content of a real person")
    harmless = run("explain", "--kind", "image", "make a congratulations banner for <@123456789012>")
    assert harmless.stdout.startswith("ALLOW: none (decided by acts")
    assert "target: member @123456789012" in harmless.stdout
