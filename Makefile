# make run: set up (first time only) and run the main comparison on the embedded model.
# make test: set up (first time only), install what the tests need from Debian, run the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch, which pip takes from local disk on our machines. GPU users: install your CUDA
# build of torch into the venv first (see README), and this step keeps it.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed-stamp
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
TEXT_FONT := /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test system-deps bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

run: install
	$(BIN)/schedcmp run "astronaut on mars" --seed 8 --schedulers all

# The emoji font and FriBiDi for Pillow's complex text layout (training tests draw emoji, ZWJ sequences
# included), DejaVu and fontconfig (the sheets' labels find their fonts through it; a test draws Cyrillic,
# Greek and Arabic), and Chromium (the HTML report is tested in a real browser).
system-deps:
	@test -f $(EMOJI_FONT) && test -f $(TEXT_FONT) && command -v fc-match >/dev/null && \
		ldconfig -p | grep -q libfribidi && command -v chromium >/dev/null || { \
		$(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq fonts-noto-color-emoji fonts-dejavu-core fontconfig libfribidi0 chromium; }

test: install system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/bench_run.py
	$(BIN)/python bench/bench_batch.py

clean:
	rm -rf $(VENV) schedcmp-runs .pytest_cache
