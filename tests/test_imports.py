"""Our top-level packages import from this repository, not from look-alikes on PyPI."""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, distribution

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("name", ["adapters", "bot", "moderation"])
def test_package_comes_from_this_repository(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert str(REPO) in module.__file__


def test_adapterhub_adapters_is_not_installed() -> None:
    # AdapterHub's package is also imported as `adapters` and would shadow ours.
    with pytest.raises(PackageNotFoundError):
        distribution("adapters")
