# One-command entry points. `make chat` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup chat test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "setup: creating .venv"; $(PYTHON) -m venv $(VENV); }
	@echo "setup: installing Atelier and its dependencies into .venv (a few minutes the first time)"
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) bot/install_progress.py -e '.[dev]'
	@echo "setup: preparing the moderation model for serving (once)"
	@$(PY) -m moderation export
	@touch $(STAMP)
	@echo "setup: done ($$($(PY) -m pip list --format=freeze 2>/dev/null | wc -l) packages in .venv)"

chat: setup
	$(PY) -m bot chat --config config.yaml

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/core.py
	$(PY) bench/jobs.py
	$(PY) bench/moderation.py
	$(PY) bench/discord.py
	$(PY) bench/slack.py
	$(PY) bench/backends.py

clean:
	rm -rf $(VENV) build *.egg-info atelier-output
