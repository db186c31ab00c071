"""`make setup`'s install step: pip runs quietly, and a one-line bar shows how far it has got.

Standard library only: it runs before anything is installed. pip draws no bar of its own under
`--quiet`, and without it prints ~100 lines, so the plan comes from a dry run (`--report`) and the
progress from pip's own log (`--log`), one "Collecting" or "Processing" line per package. The exit
status is pip's; off a terminal (CI, a pipe) it is plain `pip install --quiet`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTH = 30
REDRAW_S = 0.5
_FETCHED = re.compile(r"^\S+ (?:Collecting|Processing) ", re.M)


def bar(done: int, total: int, phase: str) -> str:
    """"setup: [#########-----] 37/92 packages, collecting"."""
    filled = WIDTH * min(done, total) // max(total, 1)
    return f"setup: [{'#' * filled}{'-' * (WIDTH - filled)}] {min(done, total)}/{total} packages, {phase}"


def planned(pip: list[str], arguments: list[str], report: Path) -> int:
    """How many packages pip would install (0 when it cannot say: then no bar is drawn)."""
    dry = subprocess.run([*pip, "install", "--quiet", "--dry-run", "--report", str(report), *arguments],
                         capture_output=True, text=True, check=False)  # fmt: skip
    if dry.returncode != 0 or not report.exists():
        return 0
    try:
        return len(json.loads(report.read_text(encoding="utf-8")).get("install", []))
    except (ValueError, OSError):
        return 0


def progress_of(log: Path) -> tuple[int, str]:
    """(packages collected so far, what pip is doing) from its log."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0, "starting"
    phase = "installing" if "Installing collected packages" in text else "collecting"
    # A package from the index is "Collecting", one from a local wheel "Processing".
    return len(_FETCHED.findall(text)), phase


def main(arguments: list[str]) -> int:
    """Install `arguments` (pip install's own) with a progress bar on a terminal; return pip's exit status."""
    pip = [sys.executable, "-m", "pip"]
    drawing = sys.stdout.isatty()
    with tempfile.TemporaryDirectory(prefix="atelier-setup-") as folder:
        total = planned(pip, arguments, Path(folder) / "plan.json") if drawing else 0
        log = Path(folder) / "pip.log"
        if total:
            print(bar(0, total, "resolving"), end="", flush=True)
        # --log makes pip draw its own bars and spinners on standard output even under --quiet; while
        # this bar is drawn they go nowhere (pip's warnings and errors are on standard error).
        quiet_output = subprocess.DEVNULL if total else None
        install = subprocess.Popen([*pip, "install", "--quiet", "--progress-bar", "off", "--log", str(log), *arguments],
                                   stdout=quiet_output)  # fmt: skip
        while install.poll() is None:
            time.sleep(REDRAW_S)
            if total:
                done, phase = progress_of(log)
                print("\r" + bar(done, total, phase), end="", flush=True)
        if total:
            print("\r" + bar(total, total, "done" if install.returncode == 0 else "failed"), flush=True)
        return install.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
