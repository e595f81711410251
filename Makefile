# The two commands of the README: `make run` (the portal on its embedded default) and
# `make test` (every check and test, on PostgreSQL and Redis). Both set up what they need.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Integration tests use the real PostgreSQL and Redis of the machine.
TEST_ENV := DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal \
	CELERY_BROKER_URL=redis://127.0.0.1:6379/15

.PHONY: run test lint bench

$(BIN)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The storage scan's compiled directory lister (storage_app/_fs_scan_native.c), built in place.
$(BIN)/.native: storage_app/_fs_scan_native.c setup.py $(BIN)/.runtime
	$(BIN)/python setup.py --quiet build_ext --inplace
	touch $@

$(BIN)/.dev: requirements.txt requirements-dev.txt $(BIN)/.runtime
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

run: $(BIN)/.runtime $(BIN)/.native
	$(BIN)/python manage.py runportal

lint: $(BIN)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

test: $(BIN)/.dev $(BIN)/.native /usr/bin/chromium lint
	.ci/services
	PORTAL_VAR_DIR=$$(mktemp -d) $(BIN)/python manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(BIN)/pytest

bench: $(BIN)/.dev $(BIN)/.native
	.ci/services
	$(BIN)/python bench/launch.py
	$(BIN)/python bench/access.py
	$(BIN)/python bench/storage_scan.py
	$(BIN)/python bench/kube_spawn.py
	$(BIN)/python bench/queue_sim.py
