# prospect: make targets. `make help` lists them from their `## ` comments.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PROSPECT_SHARED_DATA ?= $(abspath ../shared/data)

.DEFAULT_GOAL := help
.PHONY: help venv sysdeps check test test-fast test-wheel bench bench-illumination bench-sites bench-pipeline demo south-pole south-pole-lola global-he3 lock clean

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

# The venv is rebuilt only when the dependency list or the lock changes.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create or update .venv from pyproject.toml + constraints.txt

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,dev,bench]'
	@touch $(BENCH_STAMP)

# QGIS (qgis python3-qgis qgis-providers) opens the exported project in the tests, under
# Debian's /usr/bin/python3; python3-gdal brings GDAL's COG and GeoPackage validators;
# chromium renders the report (docs/platform.md).
sysdeps: ## Install the Debian packages the tests use (gdal-bin, QGIS, python3-gdal, chromium), if missing
	@missing=""; command -v gdaldem >/dev/null 2>&1 || missing="$$missing gdal-bin"; \
	/usr/bin/python3 -c 'import qgis.core' >/dev/null 2>&1 || missing="$$missing qgis python3-qgis qgis-providers"; \
	/usr/bin/python3 -c 'import osgeo_utils.samples.validate_cloud_optimized_geotiff' >/dev/null 2>&1 \
	  || missing="$$missing python3-gdal"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# `make check BIN=/some/venv/bin` uses that venv's ruff and mypy as they are (no install).
check: $(if $(filter $(VENV)/bin,$(BIN)),$(STAMP)) ## Format check, lint (ruff) and type check (mypy), as configured in pyproject.toml
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP) sysdeps ## Run the test suite (needs ../shared/data, or PROSPECT_SHARED_DATA)
	$(BIN)/python -m pytest -n 2 --dist loadfile

test-fast: $(STAMP) ## Run the tests that do not need the shared real data
	$(BIN)/python -m pytest -n 2 -m "not shared_data"

# The wheel, used as a user would: built from a clean copy of the source, installed with the
# lock into a fresh venv outside the checkout, run from a folder outside the checkout.
WHEEL_VENV ?= /tmp/prospect-wheel-venv

test-wheel: ## Build the wheel, install it in a fresh venv outside the checkout, run manifests, info and the demo from outside
	$(PYTHON) tests/wheel_check.py --venv $(WHEEL_VENV)

# Pipelines: `prospect run` resumes a run folder (stages that are current are skipped).
RUNS ?= runs
RUN = @mkdir -p $(RUNS) && $(BIN)/prospect run --resume

demo: $(STAMP) ## Run the embedded demo (synthetic south-polar scene, every stage, offline; a few minutes) into runs/demo
	$(RUN) pipelines/demo.yaml --out $(RUNS)/demo

south-pole: $(STAMP) ## Run the real coarse south-pole pipeline (LOLA 1.6 km, PSRs, craters, LP GRS, Artemis III) into runs/south_pole_coarse
	$(RUN) pipelines/south_pole_coarse.yaml --out $(RUNS)/south_pole_coarse

south-pole-lola: $(STAMP) ## Run the 20 m LOLA south-pole pipeline (downloads LDEM_875S_20M, or PROSPECT_MIRROR) into runs/south_pole_lola
	$(RUN) pipelines/south_pole_lola.yaml --out $(RUNS)/south_pole_lola

global-he3: $(STAMP) ## Map helium-3 globally from Lunar Prospector GRS Ti and FeO into runs/global_he3
	$(RUN) pipelines/global_he3.yaml --out $(RUNS)/global_he3

# The benchmarks live in benchmarks/ (not installed with the package) and run from the root.
bench: $(BENCH_STAMP) sysdeps ## Benchmark slope vs gdaldem and xarray-spatial (1k, 4k, 7584^2, 30400^2 streamed); results in build/bench
	$(BIN)/python -m benchmarks.bench_slope --big --out build/bench

bench-illumination: $(BENCH_STAMP) sysdeps ## The whole illumination stage on 7584^2 (360 az, 6 h, 2 m; target 15 min, 3 GB), 1 vs 2 Dask worker processes, the time model of the 20 m and 5 m caps, brute force and GRASS r.horizon ratios; results in build/bench
	$(BIN)/python -m benchmarks.bench_illumination --out build/bench

bench-sites: $(BENCH_STAMP) sysdeps ## Benchmark the site stage on 2048^2 and 3072^2 (parts, CPU, peak RSS); results in build/bench
	$(BIN)/python -m benchmarks.bench_sites --size 2048 --size 3072 --out build/bench

bench-pipeline: $(BENCH_STAMP) sysdeps ## The whole prospect run (terrain to exports) on a 7584^2 20 m DEM with the real vectors, stage by stage (target 30 min); results in build/bench
	$(BIN)/python -m benchmarks.bench_pipeline --out build/bench

lock: ## Re-resolve dependencies and rewrite constraints.txt
	rm -rf /tmp/prospect-lock && $(PYTHON) -m venv /tmp/prospect-lock
	/tmp/prospect-lock/bin/pip install --quiet '.[test,dev,bench]'
	{ echo "# Lock for reproducible installs: exact versions resolved on Python 3.11."; echo "# Regenerate with: make lock"; \
	  /tmp/prospect-lock/bin/pip freeze | grep -v -i '^prospect'; } > constraints.txt

clean: ## Remove the venv and caches (not the run folders in runs/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
