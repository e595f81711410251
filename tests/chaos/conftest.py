"""The chaos suite's portal: one stack for the whole package (started once, about 20 s), made
ready again around each test (every process up, broker and database running, no session)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.chaos.stack import Stack
from tests.pg_cluster import PgClusterError, postgres_bin_dir


def _missing() -> str:
    """What this machine lacks to run the suite, in words; empty if nothing."""
    try:
        postgres_bin_dir()
    except PgClusterError as exc:
        return str(exc)
    for program in ("redis-server", "nginx"):
        if not (shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")):
            return f"{program} is not installed"
    return ""


@pytest.fixture(scope="package")
def portal_stack() -> Iterator[Stack]:
    missing = _missing()
    if missing:
        # CI installs everything (make test): there a missing tool fails instead of skipping.
        if os.environ.get("CI"):
            pytest.fail(f"the chaos suite cannot run: {missing}")
        pytest.skip(f"the chaos suite cannot run: {missing}")
    stack = Stack()
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack(portal_stack: Stack) -> Iterator[Stack]:
    portal_stack.reset()
    yield portal_stack
    portal_stack.reset()
