"""`make setup`'s install step: a one-line bar on a terminal, plain pip elsewhere, and pip's own exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bot.install_progress import bar, progress_of

REPO = Path(__file__).resolve().parent.parent


def test_the_bar_fills_with_the_packages_pip_has_fetched(tmp_path: Path) -> None:
    log = tmp_path / "pip.log"
    log.write_text(
        "2026-12-07T14:02:50,612 Processing /wheels/mido-1.3.3-py3-none-any.whl\n"
        "2026-12-07T14:02:50,664 Collecting sqlite-utils\n"
        "2026-12-07T14:02:50,701   Downloading sqlite_utils-4.2.1-py3-none-any.whl (99 kB)\n"
        "2026-12-07T14:02:50,747 Collecting packaging (from mido)\n",
        encoding="utf-8",
    )
    assert progress_of(log) == (3, "collecting")
    assert bar(3, 10, "collecting") == "setup: [#########---------------------] 3/10 packages, collecting"
    assert progress_of(tmp_path / "not yet written.log") == (0, "starting")


def test_off_a_terminal_it_is_plain_pip_and_keeps_pips_exit_status() -> None:
    done = subprocess.run([sys.executable, "bot/install_progress.py", "--no-index", "no-such-package-atelier"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 1 and "setup: [" not in done.stdout
    assert "no-such-package-atelier" in done.stderr  # pip's own one-line reason
