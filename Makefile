# The two commands of the README: `make run` (the portal on its embedded default) and
# `make test` (every check and test, on PostgreSQL and Redis). Both set up what they need.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Integration tests use the real PostgreSQL and Redis of the machine.
TEST_ENV := DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal \
	CELERY_BROKER_URL=redis://127.0.0.1:6379/15

.PHONY: run test lint bench session-env screenshots

$(BIN)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The storage scan's compiled directory lister (storage_app/_fs_scan_native.c), built in place.
$(BIN)/.native: storage_app/_fs_scan_native.c setup.py $(BIN)/.runtime
	$(BIN)/python setup.py --quiet build_ext --inplace
	touch $@

# client/pyproject.toml: requirements-dev.txt installs the client (jlp) from there.
$(BIN)/.dev: requirements.txt requirements-dev.txt client/pyproject.toml $(BIN)/.runtime
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# Multi-user isolation of local sessions (sessions_app/spawners/isolation.py): bubblewrap for
# the sandbox, iptables for the packet filter on the sessions' uids, slirp4netns for each
# session's own network (session_net.py). Only root can install
# them, and only root needs them (without root the portal runs in single-user mode).
/usr/bin/bwrap /usr/sbin/iptables /usr/bin/slirp4netns:
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap iptables slirp4netns; \
	else echo "not root: no bubblewrap/iptables (single-user mode)"; fi

# The embedded broker: a redis-server that runportal starts itself on a Unix socket in var/
# (docs/benchmarks.md, "Broker"). Not needed when CELERY_BROKER_URL names a broker of yours.
/usr/bin/redis-server:
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; \
	else echo "not root: cannot install redis-server (runportal needs it without CELERY_BROKER_URL)"; fi

# The router on the portal's address (portal/router.py): Debian's nginx, which has auth_request.
/usr/sbin/nginx:
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; \
	else echo "not root: cannot install nginx (runportal needs it: apt-get install nginx-light)"; fi

# The local sessions' software (JupyterLab, the kernels, the service's packages), apart from the
# portal's: built from images/session/pypi-map.toml into .session-env (LOCAL_SESSION_ENV) the
# first time, again when one of its inputs changes, else a check of a second.
session-env:
	$(PYTHON) images/session/build_local_env.py

# The load generator of bench/web_reads.py.
/usr/bin/wrk:
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; \
	else echo "not root: cannot install wrk (bench/web_reads.py needs it: apt-get install wrk)"; fi

run: session-env $(BIN)/.runtime $(BIN)/.native /usr/bin/bwrap /usr/sbin/iptables /usr/bin/slirp4netns /usr/bin/redis-server /usr/sbin/nginx
	$(BIN)/python manage.py runportal

lint: $(BIN)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports  # the apps' layering: .importlinter

test: session-env $(BIN)/.dev $(BIN)/.native /usr/bin/chromium /usr/bin/bwrap /usr/sbin/iptables /usr/bin/slirp4netns /usr/bin/redis-server /usr/sbin/nginx lint
	.ci/services
	PORTAL_VAR_DIR=$$(mktemp -d) $(BIN)/python manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(BIN)/pytest

bench: session-env $(BIN)/.dev $(BIN)/.native /usr/bin/chromium /usr/bin/bwrap /usr/sbin/iptables /usr/bin/slirp4netns /usr/bin/redis-server /usr/sbin/nginx /usr/bin/wrk
	.ci/services
	$(BIN)/python bench/launch.py
	$(BIN)/python bench/browser_launch.py
	$(BIN)/python bench/access.py
	$(BIN)/python bench/storage_scan.py
	$(BIN)/python bench/kube_spawn.py
	$(BIN)/python bench/queue_sim.py
	$(BIN)/python bench/broker.py
	$(BIN)/python bench/router.py
	$(BIN)/python bench/waiting.py
	$(BIN)/python bench/web_reads.py
	$(BIN)/python bench/session_software.py

# The README's screenshots (docs/screenshots/), from a portal of its own with a real session:
# scripts/screenshots.py.
screenshots: session-env $(BIN)/.dev $(BIN)/.native /usr/bin/chromium /usr/bin/bwrap /usr/sbin/iptables /usr/bin/slirp4netns /usr/bin/redis-server /usr/sbin/nginx
	$(BIN)/python scripts/screenshots.py
