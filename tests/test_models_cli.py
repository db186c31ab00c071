"""`python -m bot models list | download`: what is configured, whether it is here, and one-line refusals to fetch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_models(tmp_path: Path, config: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(config, encoding="utf-8")
    environment = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub-cache"), **env}
    command = [sys.executable, "-m", "bot", "models", *args, "--config", str(path)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, env=environment, check=False)


def test_list_names_each_configured_model_where_it_is_and_how_to_fetch_the_missing(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}" + " " * 998)  # 1,000 bytes
    config = (
        f"backends:\n  text: {{type: transformers, model: Qwen/Qwen2.5-0.5B-Instruct, fallback: {{type: markov}}}}\n"
        f"  image: {{type: diffusers, model: {folder}}}\n  music: {{type: algorithmic}}\n"
    )
    done = run_models(tmp_path, config, "list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["text", "transformers", "Qwen/Qwen2.5-0.5B-Instruct", "(missing:", "python", "-m", "bot", "models", "download", "text)"]
    assert lines[1].split()[:3] == ["image", "diffusers", str(folder)] and lines[1].endswith("(local folder, 1.0 kB)")
    assert lines[2] == "1 missing; `python -m bot models download text` fetches them."
    assert done.stderr == ""


def test_a_config_of_embedded_generators_has_nothing_to_fetch(tmp_path: Path) -> None:
    done = run_models(tmp_path, "backends: {text: {type: markov}}\n", "download", "all")
    assert done.returncode == 0 and done.stdout.strip() == "Nothing to download: no model in the config comes from the model hub."


def test_download_without_a_hub_is_refused_in_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    config = "backends:\n  text: {type: transformers, model: Qwen/Qwen2.5-0.5B-Instruct}\n"
    offline = run_models(tmp_path, config, "download", "text", HF_HUB_OFFLINE="1")
    assert offline.returncode == 2 and offline.stdout == ""
    assert offline.stderr.strip().splitlines() == [
        "atelier: HF_HUB_OFFLINE is set, so nothing can be downloaded; unset it, or download on another machine with --to DIR"
    ]
    unreachable = run_models(tmp_path, config, "download", "text", HF_ENDPOINT="http://127.0.0.1:9")
    [line] = unreachable.stderr.strip().splitlines()
    assert unreachable.returncode == 2 and "cannot be reached" in line and "download text --to DIR" in line
