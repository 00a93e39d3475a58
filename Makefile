# RaaS developer entry points. Every target creates or reuses .venv and installs what it needs.
# Debian's interpreter when it has venv: user code runs under a sandbox uid that must be able to
# run the venv's Python, and pyenv's lives under /root. Any Python >= 3.10 works otherwise.
PYTHON ?= $(shell /usr/bin/python3 -c 'import ensurepip, venv, sys; assert sys.version_info >= (3, 10)' \
	2>/dev/null && echo /usr/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYPROJECTS := gym_raas/pyproject.toml node_runtime/pyproject.toml operator/pyproject.toml api/pyproject.toml requirements-dev.txt

.PHONY: demo test bench lint format clean controlplane controlplane-smoke

$(STAMP): $(PYPROJECTS) scripts/install-system-deps
	bash scripts/install-system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --config-settings editable_mode=compat -e 'gym_raas[plot,s3]' -e node_runtime -e operator -e api -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)  ## Run the example controller and print where the results are.
	$(BIN)/raas demo

test: $(STAMP) controlplane  ## Run the whole test suite.
	$(BIN)/python -m raas_node.runner.image  # the job image `raas serve` runs users' programs in (cached)
	RAAS_CONTROLPLANE_BIN="$$(bash tests/controlplane/build.sh | tail -n 1)" $(BIN)/python -m pytest

controlplane:  ## Build (once, cached by version) the pinned upstream Kubernetes control plane, etcd and Helm.
	bash tests/controlplane/build.sh

controlplane-smoke: controlplane  ## Start etcd, API server, controller manager and scheduler on loopback, check them, stop them.
	bash tests/controlplane/smoke.sh "$$(bash tests/controlplane/build.sh | tail -n 1)"

bench: $(STAMP)  ## Print the performance figures (ratios against peers measured in the same run).
	$(BIN)/python -m benchmarks

lint: $(STAMP)  ## ruff and mypy.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) results test-artifacts .pytest_cache .mypy_cache .ruff_cache
