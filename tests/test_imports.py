"""Our top-level packages import from this repository, not from look-alikes on PyPI."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

from tests.conftest import REPO


def test_packages_come_from_this_repository_when_imported_from_anywhere(tmp_path: Path) -> None:
    # From another folder, so the repository is not on sys.path by accident of the working directory.
    code = "import adapters, bot, moderation; print(adapters.__file__); print(bot.__file__); print(moderation.__file__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    files = result.stdout.split()
    assert len(files) == 3
    for file in files:
        assert Path(file).resolve().is_relative_to(REPO), file


def test_adapterhub_adapters_is_not_installed() -> None:
    # AdapterHub's package is also imported as `adapters` and would shadow ours.
    with pytest.raises(PackageNotFoundError):
        distribution("adapters")
