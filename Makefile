# Two commands: `make demo` and `make test`. Both create .venv when missing and reuse it after.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export PYTHONUNBUFFERED := 1

.PHONY: demo demo-video demo-rgb demo-translate test lint format install clean-outputs

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@start=$$(date +%s) && $(BIN)/dvc repro && $(BIN)/ganforge report --started $$start

# the video pipeline (video/dvc.yaml, video/params.yaml): a MoCoGAN on moving digits; its clips join library/
demo-video: $(STAMP)
	@start=$$(date +%s) && $(BIN)/dvc repro video/dvc.yaml && cd video && $(BIN)/ganforge report --started $$start

# image translation (translate/dvc.yaml, translate/params.yaml): a CycleGAN between handwritten and typeset digits
# (both built in), scored and registered, then the library's digit images (`make demo` builds them) restyled into
# typeset ones; without a library yet it builds that first
demo-translate: $(STAMP)
	@test -f library/catalog.parquet || { echo "demo-translate: no library yet: building it first (make demo)"; \
	  $(MAKE) --no-print-directory demo; }
	@start=$$(date +%s) && $(BIN)/dvc repro translate/dvc.yaml && cd translate && $(BIN)/ganforge report --started $$start

# your own RGB images (one sub-folder per class) through the whole pipeline at 32 px (rgb/dvc.yaml, rgb/params.yaml):
# `make demo-rgb DATA=/path/to/class/folders`; rgb/data/raw is linked to DATA (later runs may leave DATA out)
demo-rgb: $(STAMP)
	@if [ -n "$(DATA)" ]; then \
	  test -d "$(DATA)" || { echo "make demo-rgb: DATA=$(DATA) is not a folder" >&2; exit 2; }; \
	  mkdir -p rgb/data && ln -sfn "$(abspath $(DATA))" rgb/data/raw; \
	elif [ ! -d rgb/data/raw ]; then \
	  echo "make demo-rgb: give DATA=/path/to/class/folders (one sub-folder of images per class)" >&2; exit 2; \
	fi
	@start=$$(date +%s); $(BIN)/dvc repro rgb/dvc.yaml; status=$$?; \
	  cd rgb && $(BIN)/ganforge report --started $$start; exit $$status  # the report also when the gate said no

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean-outputs:
	rm -rf data/prepared models metrics plots mlflow.db mlartifacts video/data/prepared video/models video/metrics video/plots \
	  rgb/data/prepared rgb/models rgb/metrics rgb/plots translate/data/prepared translate/models translate/metrics \
	  translate/plots
