# The two commands of the README: `make run` (the main job on the embedded synthetic data)
# and `make test` (`make test-quick`: without the slow end-to-end tests). Each creates .venv
# when it is missing or older than pyproject.toml or its lock, requirements/dev.lock.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# checkov (the Kubernetes manifest policy linter of tests/infra/test_policy_lint.py) lives in a
# venv of its own: its pins would fight the project's.
LINT_VENV := .venv-lint
CHECKOV := $(LINT_VENV)/bin/checkov
# Every install is from a hashed lock (requirements/*.lock, written by `make lock`) with
# --require-hashes: the same files on every machine, or a refusal.
DEV_LOCK := requirements/dev.lock
AUDITED_LOCKS := $(DEV_LOCK) requirements/runtime.lock requirements/mlflow.lock \
	requirements/checkov.lock requirements/tools.lock
# uv (`make lock`) and pip-audit (`make audit`), under build/ (git-ignored; `make clean` drops it).
TOOLS_VENV := build/tools-venv
TOOLS := $(TOOLS_VENV)/.installed
# Where the torch +cpu wheel lies (pip's find-links on these machines): PyPI has only the
# CUDA build of torch.
TORCH_WHEELS ?= /opt/wheels
# Under 2 minutes: configuration, tracking, package rules, I/O, data, evaluation, the pure
# promotion decision, study planning and reporting, the CLI and the DVC checks that need no run.
QUICK_TESTS := tests/test_config.py tests/test_tracking.py tests/test_package_rules.py \
	tests/io tests/data tests/evaluation tests/promotion/test_decide.py tests/study/test_plan.py \
	tests/study/test_report.py tests/study/test_analysis.py tests/cli tests/e2e tests/kfp/test_conformance.py

.PHONY: run test test-quick test-fast system-packages lint-tools lint audit lock bench fuzz images clean help

help:
	@echo "make run    - synthesize data, then dvc repro (validate, prepare, train, evaluate, promote)"
	@echo "make test   - the test suite (installs PostgreSQL first when missing: system-packages)"
	@echo "make test-quick - unit tiers, under 2 minutes (QUICK_TESTS)"
	@echo "make test-fast  - every test not marked slow (no pipeline or multi-epoch training run)"
	@echo "make system-packages - apt-get install postgresql when missing (root or sudo)"
	@echo "make lint-tools - checkov, the manifest policy linter, in .venv-lint"
	@echo "make lint   - ruff, mypy over src/, and the audit"
	@echo "make audit  - pip-audit over the locks: fails on a known vulnerability"
	@echo "make lock [UPGRADE=1] - rewrite requirements/*.lock (UPGRADE=1: newest versions)"
	@echo "make bench  - benchmark suite -> benchmarks/results.md, .json (BENCH_ARGS for flags)"
	@echo "make fuzz   - each fuzz target for FUZZ_SECONDS (default 300) -> build/fuzz/<target>/"
	@echo "make images REGISTRY=... [TAG=...] [PUSH=1] - build the images, tagged from the commit"

# The lock holds pip, setuptools and wheel as well, so the project itself installs without
# fetching anything unhashed.
$(STAMP): pyproject.toml $(DEV_LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
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

$(CHECKOV): requirements/checkov.lock
	@test -x $(LINT_VENV)/bin/python || $(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements/checkov.lock
	@touch $(CHECKOV)

$(TOOLS): requirements/tools.lock
	@test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements/tools.lock
	@touch $(TOOLS)

# Rewrites the locks from pyproject.toml and requirements/*.in for CPython 3.11 on x86-64 Linux
# (the venvs and the images). A version already locked is kept unless UPGRADE=1. dev.lock comes
# first: the image locks are constrained to its versions, so the images run what the tests ran.
LOCK = $(TOOLS_VENV)/bin/uv pip compile --quiet --no-config --generate-hashes \
	--python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)
lock: $(TOOLS)
	$(LOCK) pyproject.toml requirements/build.in --extra dev \
		--find-links $(TORCH_WHEELS) --emit-find-links -o $(DEV_LOCK)
	$(LOCK) pyproject.toml requirements/build.in -c $(DEV_LOCK) -o requirements/runtime.lock
	$(LOCK) requirements/mlflow.in -c $(DEV_LOCK) -o requirements/mlflow.lock
	$(LOCK) requirements/checkov.in -o requirements/checkov.lock
	$(LOCK) requirements/tools.in -o requirements/tools.lock

# Known vulnerabilities (PyPI's advisory data) in any locked version fail the audit; so does a
# pin it could not look up (--strict): an audit that checked nothing must not pass. A local
# version (torch's +cpu build) is not on PyPI: it is looked up as the release it was built
# from. Accepted findings are in requirements/audit-ignore.txt, each with its reason. One
# pip-audit per lock (it refuses two versions of a package in one run); every lock is audited
# even when one fails. Where pip-audit's advisory service does not answer (PyPI's per-version
# JSON or OSV; this project's build machines serve neither), scripts/audit_newest.py checks the
# advisories PyPI lists for each package's newest release instead, fails on one of those, and
# names every locked version it could not check.
AUDIT_IGNORES = $(shell sed -n 's/^\([A-Za-z0-9-]\{1,\}\)[[:space:]].*/--ignore-vuln \1/p' \
	requirements/audit-ignore.txt)
audit: $(TOOLS)
	@if ! $(TOOLS_VENV)/bin/python scripts/audit_newest.py --probe; then \
		$(TOOLS_VENV)/bin/python scripts/audit_newest.py --ignore requirements/audit-ignore.txt \
			$(AUDITED_LOCKS); \
	else \
		mkdir -p build/audit; \
		status=0; for lock in $(AUDITED_LOCKS); do \
			audited=build/audit/$$(basename $$lock); \
			sed -E 's/^([A-Za-z0-9._-]+==[^+ ]+)\+[A-Za-z0-9.]+/\1/' $$lock > $$audited; \
			echo "pip-audit $$lock"; \
			$(TOOLS_VENV)/bin/pip-audit --strict --disable-pip --require-hashes \
				--progress-spinner off $(AUDIT_IGNORES) -r $$audited || status=1; \
		done; exit $$status; \
	fi

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# The readers of untrusted files under atheris (tests/fuzz); every target runs even when one
# finds a crash, and make fails if any did.
FUZZ_SECONDS ?= 300
FUZZ_TARGETS := mat5 hdf5 fasta manifest

fuzz: $(STAMP)
	@status=0; for target in $(FUZZ_TARGETS); do \
		$(BIN)/python -m tests.fuzz $$target --seconds $(FUZZ_SECONDS) || status=1; \
	done; exit $$status

lint: $(STAMP) audit
	$(BIN)/ruff check src tests benchmarks components pipelines
	$(BIN)/ruff format --check src tests benchmarks components pipelines
	$(BIN)/mypy src

# scripts/build_images.sh reads REGISTRY, TAG, PUSH, PLATFORM and BUCKET from the environment,
# where make puts variables given on its command line.
images: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/build_images.sh

clean:
	rm -rf build .dvc/tmp
