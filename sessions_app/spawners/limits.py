"""Operating-system limits for local sessions: rlimits, CPU affinity and cgroup v2.

``RLIMIT_AS`` caps the address space of each process at the session's memory and the CPU
affinity restricts it to ``cpus`` CPUs; both are set between fork and exec and inherited by every
kernel and terminal. Where a writable cgroup v2 hierarchy with the memory controller exists, a
per-session cgroup also caps the session as a whole (``memory.max``, ``cpu.max``).
"""

from __future__ import annotations

import functools
import logging
import os
import resource
from collections.abc import Callable
from pathlib import Path

from sessions_app.spawners.base import SpawnerError

logger = logging.getLogger(__name__)

CGROUP_V2_ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
_CPU_PERIOD_US = 100_000


@functools.cache
def cgroup_parent(roots: tuple[Path, ...] = CGROUP_V2_ROOTS) -> Path | None:
    """The cgroup v2 directory for per-session cgroups, or None (logged once) if there is none.

    It is ``jupyter-portal`` under the first writable v2 root that has the memory controller.
    """
    for root in roots:
        try:
            controllers = (root / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if "memory" not in controllers:
            continue
        enable = " ".join(f"+{name}" for name in ("memory", "cpu") if name in controllers)
        parent = root / "jupyter-portal"
        try:
            parent.mkdir(exist_ok=True)
            # A cgroup passes a controller on only to the children it enabled it for, per level.
            for directory in (root, parent):
                (directory / "cgroup.subtree_control").write_text(enable)
        except OSError as exc:
            logger.warning("cgroup v2 at %s is not usable (%s): no per-session cgroups", root, exc)
            return None
        return parent
    logger.info(
        "No cgroup v2 with the memory controller: sessions get rlimits and CPU affinity only"
    )
    return None


def cgroup_path(session_id: str) -> Path | None:
    parent = cgroup_parent()
    return None if parent is None else parent / session_id


def make_cgroup(session_id: str, memory: int, cpus: int) -> Path | None:
    path = cgroup_path(session_id)
    if path is None:
        return None
    try:
        path.mkdir(exist_ok=True)
        (path / "memory.max").write_text(str(memory))
        # Swap would let the session grow past memory.max.
        if (path / "memory.swap.max").exists():
            (path / "memory.swap.max").write_text("0")
        if (path / "cpu.max").exists():
            (path / "cpu.max").write_text(f"{cpus * _CPU_PERIOD_US} {_CPU_PERIOD_US}")
    except OSError as exc:
        raise SpawnerError(f"Cannot set up the session's cgroup {path}: {exc}") from exc
    return path


def cpu_set(count: int, port: int) -> set[int]:
    available = sorted(os.sched_getaffinity(0))
    count = max(1, min(count, len(available)))
    # Rotate by port so that sessions spread over the CPUs instead of all taking the first ones.
    return {available[(port + i) % len(available)] for i in range(count)}


def limiter(memory: int, cpus: set[int], cgroup: Path | None) -> Callable[[], None]:
    procs = None if cgroup is None else str(cgroup / "cgroup.procs")

    def apply_limits() -> None:
        # Runs in the child between fork and exec, where another thread's locks may be held:
        # only system calls on values computed beforehand, no logging, no imports.
        if procs is not None:
            fd = os.open(procs, os.O_WRONLY)
            os.write(fd, b"0")  # "0" moves the writing process itself
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        os.sched_setaffinity(0, cpus)

    return apply_limits
