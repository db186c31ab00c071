"""/imagine and /compose end to end in the console, and jobs surviving a killed process."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.console import ConsoleAdapter
from bot.core import Bot
from tests.test_crash import read_line


async def run_console(bot: Bot, tmp_path: Path, text: str) -> list[str]:
    out = io.StringIO()
    await ConsoleAdapter(io.BytesIO(text.encode()), out, tmp_path / "out", interactive=False).run(bot)
    return out.getvalue().splitlines()


async def test_imagine_queues_reports_progress_and_saves_the_png(markov_bot: Bot, tmp_path: Path) -> None:
    lines = await run_console(markov_bot, tmp_path, "/imagine a red fox in the snow --seed 5 --size 64x64\n")
    match = re.fullmatch(r"Queued image job ([0-9a-f]{8}) \(starting now\), seed 5\. /cancel \1 to stop it\.", lines[0])
    assert match, lines
    assert lines[1].startswith("... ") and "step 1/8" in lines[1]
    path = tmp_path / "out" / f"a-red-fox-in-the-snow-{match.group(1)}-seed5.png"  # a folder of results can be told apart
    assert lines[-1] == f"[{match.group(1)} · seed 5] Saved image/png to {path.resolve()}"
    assert path.read_bytes().startswith(b"\x89PNG")


async def test_the_same_seed_gives_the_same_file_and_a_reroll_a_new_seed(markov_bot: Bot, tmp_path: Path) -> None:
    lines = await run_console(markov_bot, tmp_path, "/imagine dunes --seed 9 --size 64x64\n/imagine dunes --seed 9 --size 64x64\n")
    saved = [Path(line.split(" to ", 1)[1]) for line in lines if "Saved" in line]
    assert len(saved) == 2 and saved[0] != saved[1] and saved[0].read_bytes() == saved[1].read_bytes()
    rolls = [await run_console(markov_bot, tmp_path, "/imagine dunes --size 64x64\n") for _ in range(2)]
    seeds = [int(re.search(r"seed (\d+)\.", lines[0]).group(1)) for lines in rolls]  # type: ignore[union-attr]
    assert len({9, *seeds}) == 3


async def test_compose_saves_wav_and_midi(markov_bot: Bot, tmp_path: Path) -> None:
    lines = await run_console(markov_bot, tmp_path, "/compose calm piano --duration 2 --seed 3\n")
    assert lines[0].startswith("Queued music job")
    job_id = lines[0].split()[3]
    assert lines[-2].endswith(str((tmp_path / "out" / f"calm-piano-{job_id}-seed3.wav").resolve()))
    assert lines[-1].endswith(str((tmp_path / "out" / f"calm-piano-{job_id}-seed3.mid").resolve()))


async def test_queue_and_cancel_in_the_console(markov_bot: Bot, tmp_path: Path) -> None:
    lines = await run_console(
        markov_bot, tmp_path,
        "/queue\n/imagine big --size 1024x1024 --n 4 --seed 1\n/queue\n/cancel\n/cancel abc\n",
    )
    assert lines[0] == "You have no queued or running jobs."
    job_id = lines[1].split()[3]
    assert lines[2] == "Your jobs:"
    assert lines[3].startswith(f"{job_id} image 'big': ")
    assert f"Cancelled image job {job_id}." in lines
    assert "No job abc is queued or running; /queue lists yours." in lines
    assert not any("Saved" in line for line in lines)


async def test_forget_me_cancels_the_users_jobs_and_deletes_their_files(markov_bot: Bot, tmp_path: Path) -> None:
    done = await run_console(markov_bot, tmp_path, "/imagine dunes --size 64x64 --n 2 --seed 1\n")
    assert len([line for line in done if "Saved" in line]) == 2
    (tmp_path / "out" / "my-notes-1a2b3c4d-seed1.txt").write_text("someone else's")  # not one of this user's jobs
    job_ids = {re.search(r"job ([0-9a-f]{8})", done[0]).group(1)}  # type: ignore[union-attr]
    (tmp_path / "out" / f"a-{next(iter(job_ids))}-word-in-a-prompt-ffffffff-seed2.png").write_text("")  # its id, but as a prompt word
    lines = await run_console(markov_bot, tmp_path, "/imagine big --size 1024x1024 --n 4 --seed 1\n/forget-me\n")
    job_id = lines[0].split()[3]
    assert f"Cancelled image job {job_id}." in lines
    assert any(line.startswith("Done: deleted") and "2 job(s) and their 2 saved file(s)" in line for line in lines), lines
    assert await markov_bot.store.count("jobs") == 0
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted(
        ["my-notes-1a2b3c4d-seed1.txt", f"a-{next(iter(job_ids))}-word-in-a-prompt-ffffffff-seed2.png"]
    )


@pytest.mark.slow
def test_a_job_running_when_the_process_is_killed_is_retried_on_restart(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"bot: {{db: {tmp_path / 'jobs.db'}, output_dir: {tmp_path / 'out'}}}\n")
    command = [sys.executable, "-m", "bot", "chat", "--config", str(config)]
    first = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert first.stdin is not None
    first.stdin.write(b"/imagine a long walk --size 1024x1024 --n 4 --seed 21\n/compose calm --seed 2 --duration 2\n")
    first.stdin.flush()
    try:
        seen: list[str] = []
        while not any("image 1/4" in line for line in seen):  # the picture is being drawn now
            assert len(seen) < 10, seen
            seen.append(read_line(first).decode())
        queued = next(line for line in seen if line.startswith("Queued image job"))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    job_id = queued.split()[3]
    second = subprocess.run(command, input=b"", capture_output=True, timeout=120)
    out = second.stdout.decode()
    assert second.returncode == 0, second.stderr.decode()
    assert f"Retrying your image job {job_id} after a restart" in out
    assert sorted(p.name.rsplit("-", 1)[1] for p in (tmp_path / "out").glob("calm-*-seed2.*")) == ["seed2.mid", "seed2.wav"]
    pictures = sorted(p.name for p in (tmp_path / "out").glob(f"a-long-walk-{job_id}-seed2?.png"))
    assert pictures == [f"a-long-walk-{job_id}-seed{s}.png" for s in (21, 22, 23, 24)]


async def test_reroll_and_vary_build_on_an_earlier_job(markov_bot: Bot, tmp_path: Path) -> None:
    lines = await run_console(markov_bot, tmp_path, "/imagine dunes --seed 9 --size 64x64 --n 2\n")
    job_id = re.search(r"job ([0-9a-f]{8})", lines[0]).group(1)  # type: ignore[union-attr]
    rerolled = await run_console(markov_bot, tmp_path, f"/reroll {job_id}\n")
    assert "seed 9." not in rerolled[0] and rerolled[-1].endswith(".png")
    varied = await run_console(markov_bot, tmp_path, f"/vary {job_id} 2\n")
    names = sorted(Path(line.split(" to ", 1)[1]).name for line in varied if "Saved" in line)
    assert len(names) == 2 and all(re.fullmatch(r"dunes-[0-9a-f]{8}-seed10-v\d+\.png", name) for name in names)  # picture 2 had seed 10
    assert (await run_console(markov_bot, tmp_path, f"/vary {job_id} 3\n"))[-1] == f"Job {job_id} made 2 picture(s); choose one from 1 to 2."
    again = await run_console(markov_bot, tmp_path, "/reroll\n")  # no id: the newest job here, the variations
    assert again[0].startswith("Queued image job") and again[-1].endswith(".png")


async def test_admin_rights_do_not_reach_jobs_of_another_workspace(markov_bot: Bot) -> None:
    from adapters.memory import MemoryAdapter

    await markov_bot.start_jobs()
    home, elsewhere = MemoryAdapter(markov_bot, "w1"), MemoryAdapter(markov_bot, "w2")
    [queued, *_] = await home.say("/imagine dunes --seed 9 --size 64x64", user="alice")
    job_id = re.search(r"job ([0-9a-f]{8})", queued).group(1)  # type: ignore[union-attr]
    assert "someone else's" in (await elsewhere.say(f"/reroll {job_id}", user="mallory", admin=True))[-1]
    assert "Started" not in " ".join(await home.say(f"/reroll {job_id}", user="root", admin=True))
    await markov_bot.jobs.drain()


async def test_near_misses_are_answered_with_what_was_meant(markov_bot: Bot, tmp_path: Path) -> None:
    lines = await run_console(
        markov_bot, tmp_path,
        "/reroll\n/imagine a cat -seed 4\n/imagine a cat --sede 4\n/imagne a cat\n/imagine a cat -ish, in blue --size 64x64 --seed 3\n",
    )  # fmt: skip
    assert lines[0] == "You have no job here to reroll yet; make one with /imagine or /compose."
    assert lines[1] == "Did you mean --seed? Options take two dashes, e.g. /imagine … --seed 42."
    assert lines[2].startswith("Unknown option --sede for /imagine; did you mean --seed? options: --seed")
    assert lines[3] == "Unknown command /imagne; did you mean /imagine? type /help to see the commands."
    assert lines[4].startswith("Queued image job") and lines[-1].endswith("-seed3.png")  # "-ish" is no option: part of the prompt


async def test_options_the_embedded_generator_ignores_are_named_once(markov_bot: Bot, tmp_path: Path) -> None:
    twice = "/imagine dunes --size 64x64 --steps 4 --guidance 2\n" * 2
    lines = await run_console(markov_bot, tmp_path, twice + "/compose calm --duration 1 --guidance 3\n")
    notes = [line for line in lines if line.startswith("Note:")]
    assert notes == [
        "Note: the procedural image generator has no use for --guidance and --steps, so they are ignored here.",
        "Note: the algorithmic music generator has no use for --guidance, so it is ignored here.",
    ]
