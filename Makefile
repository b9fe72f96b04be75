# The two commands of the README: `make run` (the main job on the embedded synthetic data)
# and `make test` (`make test-quick`: without the slow end-to-end tests). Each creates .venv
# when it is missing or older than pyproject.toml.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# checkov (the Kubernetes manifest policy linter of tests/infra/test_policy_lint.py) lives in a
# venv of its own: its pins would fight the project's.
LINT_VENV := .venv-lint
CHECKOV := $(LINT_VENV)/bin/checkov
# Under 2 minutes: configuration, tracking, package rules, I/O, data, evaluation, the pure
# promotion decision, study planning and reporting, the CLI and the DVC checks that need no run.
QUICK_TESTS := tests/test_config.py tests/test_tracking.py tests/test_package_rules.py \
	tests/io tests/data tests/evaluation tests/promotion/test_decide.py tests/study/test_plan.py \
	tests/study/test_report.py tests/study/test_analysis.py tests/cli tests/e2e tests/kfp/test_conformance.py

.PHONY: run test test-quick test-fast system-packages lint-tools lint bench images clean help

help:
	@echo "make run    - synthesize data, then dvc repro (validate, prepare, train, evaluate, promote)"
	@echo "make test   - the test suite (installs PostgreSQL first when missing: system-packages)"
	@echo "make test-quick - unit tiers, under 2 minutes (QUICK_TESTS)"
	@echo "make test-fast  - every test not marked slow (no pipeline or multi-epoch training run)"
	@echo "make system-packages - apt-get install postgresql when missing (root or sudo)"
	@echo "make lint-tools - checkov, the manifest policy linter, in .venv-lint"
	@echo "make lint   - ruff, and mypy over src/"
	@echo "make bench  - benchmark suite -> benchmarks/results.md, .json (BENCH_ARGS for flags)"
	@echo "make images REGISTRY=... [TAG=...] [PUSH=1] - build the images, tagged from the commit"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/run_main.sh

test: $(STAMP) system-packages lint-tools
	$(BIN)/pytest

test-quick: $(STAMP)
	$(BIN)/pytest -m "not slow" $(QUICK_TESTS)

test-fast: $(STAMP) system-packages
	$(BIN)/pytest -m "not slow"

# PostgreSQL for the tests of the registry as deployed (tests/conftest.py: auth_registry).
system-packages:
	@bash scripts/install_system_packages.sh

lint-tools: $(CHECKOV)

$(CHECKOV):
	@test -x $(LINT_VENV)/bin/python || $(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install --quiet "checkov==3.3.30"

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks components pipelines
	$(BIN)/ruff format --check src tests benchmarks components pipelines
	$(BIN)/mypy src

# scripts/build_images.sh reads REGISTRY, TAG, PUSH, PLATFORM and BUCKET from the environment,
# where make puts variables given on its command line.
images: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/build_images.sh

clean:
	rm -rf build .dvc/tmp
