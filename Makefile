# make run: set up (first time only) and run the main comparison on the embedded model.
# make test: set up (first time only), install what the tests need from Debian, run the tests; then build the
# Flax environment (first time only) and run the Flax backend's tests in it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch, which pip takes from local disk on our machines. GPU users: install your CUDA
# build of torch into the venv first (see README), and this step keeps it.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed-stamp
# The Flax backend's own environment (diffusers 0.39, the last with Flax; transformers 4.x; jax and flax for
# the CPU), pinned in flax-constraints.txt. The main environment above stays as it is.
FLAX_VENV ?= .venv-flax
FLAX_BIN := $(FLAX_VENV)/bin
FLAX_STAMP := $(FLAX_VENV)/.installed-stamp
# Two XLA host devices, so that one image per device, replicated params and sharded prompts are exercised.
FLAX_XLA_FLAGS ?= --xla_force_host_platform_device_count=2
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
TEXT_FONT := /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test system-deps bench clean flax test-flax

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
	$(MAKE) test-flax

bench: install
	$(BIN)/python bench/bench_run.py
	$(BIN)/python bench/bench_batch.py

# make flax: build .venv-flax (first time, or when the pins change) with schedcmp installed editable.
flax: $(FLAX_STAMP)

$(FLAX_STAMP): pyproject.toml flax-constraints.txt
	@test -x $(FLAX_BIN)/python || $(PYTHON) -m venv $(FLAX_VENV)
	$(FLAX_BIN)/python -m pip install --quiet --disable-pip-version-check -c flax-constraints.txt \
		torch diffusers transformers jax jaxlib flax huggingface-hub pytest jsonschema -e .
	@touch $(FLAX_STAMP)

# The Flax backend's tests, in its own environment.
test-flax: flax
	XLA_FLAGS=$(FLAX_XLA_FLAGS) $(FLAX_BIN)/python -m pytest -q tests/test_flax.py

clean:
	rm -rf $(VENV) schedcmp-runs .pytest_cache
