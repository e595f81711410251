"""Whole-session limits for local sessions: a cgroup per session, rlimits as the last fallback.

Each session gets a cgroup that the server joins between fork and exec, so every process the
session ever starts (kernels, terminals, a ``setsid`` daemon, a double fork) is in it and is
held, together with the others, to the session's memory, CPUs and number of processes:

- cgroup v2 where a writable unified hierarchy with the memory controller exists:
  ``<root>/jupyter-portal/<session_id>`` with ``memory.max`` (and ``memory.swap.max`` 0),
  ``cpu.max`` and ``pids.max``;
- cgroup v1 where that is what the machine has: ``<mount>/jupyter-portal/<session_id>`` in the
  ``memory`` (``memory.limit_in_bytes``, and ``memory.memsw.limit_in_bytes`` so that swap does
  not extend it), ``cpu`` (``cpu.cfs_quota_us`` = CPUs x period), ``cpuacct`` (CPU time, for
  usage and tests) and ``pids`` (``pids.max``) hierarchies;
- neither: ``RLIMIT_AS`` per process and the CPU affinity (a process can widen its own
  affinity, and several processes together can exceed the memory: only a fallback).

The cgroup is also how a stop finds every process of the session (:func:`cgroup_kill`), and
how a worker started later finds the session (the directory carries the session id).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sessions_app.spawners.base import SpawnerError

logger = logging.getLogger(__name__)

PARENT_NAME = "jupyter-portal"
CGROUP_V2_ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
# The v1 controllers a session's cgroup lives in; memory is required, the others are used
# where mounted. cpuacct is accounting only (CPU time used), often co-mounted with cpu.
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
_CPU_PERIOD_US = 100_000
_KILL_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class CgroupLayout:
    """Where per-session cgroups go: ``version`` 2 (one parent) or 1 (a parent per mount)."""

    version: int
    # v1: controller -> its hierarchy's parent folder (co-mounted controllers share one);
    # v2: {"unified": parent}.
    parents: dict[str, Path]

    def session_dirs(self, session_id: str) -> list[Path]:
        """The session's folders, one per distinct hierarchy."""
        return list(dict.fromkeys(parent / session_id for parent in self.parents.values()))

    def label(self) -> str:
        return f"cgroup v{self.version}"


@dataclass(frozen=True)
class SessionCgroup:
    """One session's cgroup (a folder per hierarchy)."""

    layout: CgroupLayout
    session_id: str

    @property
    def dirs(self) -> list[Path]:
        return self.layout.session_dirs(self.session_id)

    def _dir(self, controller: str) -> Path | None:
        parent = self.layout.parents.get("unified" if self.layout.version == 2 else controller)
        return None if parent is None else parent / self.session_id

    def exists(self) -> bool:
        return any(path.is_dir() for path in self.dirs)

    def pids(self) -> set[int]:
        """Every process of the session that is not a zombie (they are dead, only unreaped)."""
        found: set[int] = set()
        for path in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(line) for line in (path / "cgroup.procs").read_text().split())
        return {pid for pid in found if not _zombie(pid)}

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer stopped in the session so far."""
        memory = self._dir("memory")
        if memory is None:
            return 0
        name = "memory.events" if self.layout.version == 2 else "memory.oom_control"
        try:
            lines = (memory / name).read_text().splitlines()
        except OSError:
            return 0
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def cpu_usage_seconds(self) -> float | None:
        """CPU time the session used (all its processes, past and present), if accounted."""
        if self.layout.version == 2:
            path = self._dir("unified")
            if path is None:
                return None
            with contextlib.suppress(OSError, ValueError, KeyError):
                for line in (path / "cpu.stat").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        return int(value) / 1e6
            return None
        path = self._dir("cpuacct")
        if path is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            return int((path / "cpuacct.usage").read_text()) / 1e9
        return None

    def remove(self, wait_seconds: float = 2.0) -> None:
        """Remove the session's folders (they must hold no process).

        A cgroup stays busy (EBUSY) for a moment after its last process was reaped, while the
        kernel lets go of it: retried until ``wait_seconds``.
        """
        deadline = time.monotonic() + wait_seconds
        for path in self.dirs:
            while True:
                try:
                    path.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                        time.sleep(_KILL_POLL_SECONDS)
                        continue
                    logger.warning("Cannot remove cgroup %s: %s", path, exc)
                break


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The state follows the command name in parentheses, which may itself hold ")".
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return True  # gone meanwhile


def _v1_mounts() -> dict[str, Path]:
    """controller -> mount point of the v1 hierarchies that are mounted read-write."""
    mounts: dict[str, Path] = {}
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return mounts
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[2] != "cgroup":
            continue
        options = fields[3].split(",")
        if "rw" not in options:
            continue
        for controller in V1_CONTROLLERS:
            if controller in options:
                mounts.setdefault(controller, Path(fields[1]))
    return mounts


# CPU weight under contention. A cgroup weighs like one process of its parent's level by
# default, so the parent of every session would get one process's share against everything
# else on the machine: sessions would starve behind two busy processes. The parent weighs as
# many processes as the machine has CPUs, and each session as many as its CPUs (its quota
# still caps it).
_V1_SHARES_PER_CPU = 1024
_V2_WEIGHT_PER_CPU = 100


def _v1_shares(cpus: int) -> str:
    return str(min(262_144, _V1_SHARES_PER_CPU * max(1, cpus)))


def _v2_weight(cpus: int) -> str:
    return str(min(10_000, _V2_WEIGHT_PER_CPU * max(1, cpus)))


def _v2_layout(roots: tuple[Path, ...]) -> CgroupLayout | None:
    for root in roots:
        try:
            controllers = (root / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if "memory" not in controllers:
            continue
        enable = " ".join(f"+{name}" for name in ("memory", "cpu", "pids") if name in controllers)
        parent = root / PARENT_NAME
        try:
            parent.mkdir(exist_ok=True)
            # A cgroup passes a controller on only to the children it enabled it for, per level.
            for directory in (root, parent):
                (directory / "cgroup.subtree_control").write_text(enable)
            _write_if_present(parent / "cpu.weight", _v2_weight(os.cpu_count() or 1))
        except OSError as exc:
            logger.warning("cgroup v2 at %s is not usable (%s)", root, exc)
            continue
        return CgroupLayout(2, {"unified": parent})
    return None


def _v1_layout(mounts: dict[str, Path]) -> CgroupLayout | None:
    if "memory" not in mounts:
        return None
    parents: dict[str, Path] = {}
    try:
        for controller, mount in mounts.items():
            parent = mount / PARENT_NAME
            parent.mkdir(exist_ok=True)
            if controller == "memory" and (mount / "memory.use_hierarchy").exists():
                # Old kernels default to flat accounting: a child's usage would then not count
                # against the parent. Only writable before the first child exists; best effort.
                with contextlib.suppress(OSError):
                    (parent / "memory.use_hierarchy").write_text("1")
            if controller == "cpu":
                _write_if_present(parent / "cpu.shares", _v1_shares(os.cpu_count() or 1))
            parents[controller] = parent
    except OSError as exc:
        logger.warning("cgroup v1 is not usable (%s)", exc)
        return None
    return CgroupLayout(1, parents)


@functools.cache
def cgroup_layout(
    roots: tuple[Path, ...] = CGROUP_V2_ROOTS, v1: bool = True
) -> CgroupLayout | None:
    """Where per-session cgroups go on this machine, or None (logged once): v2 first, then v1."""
    layout = _v2_layout(roots) or (_v1_layout(_v1_mounts()) if v1 else None)
    if layout is None:
        logger.warning(
            "No writable cgroup with the memory controller: sessions get rlimits and CPU "
            "affinity only (per process, not per session)"
        )
    return layout


def session_cgroup(session_id: str) -> SessionCgroup | None:
    """The session's cgroup (whether or not it exists), or None where there are no cgroups."""
    layout = cgroup_layout()
    return None if layout is None else SessionCgroup(layout, session_id)


def cgroup_session_ids() -> set[str]:
    """The sessions that have a cgroup on this machine (any runtime directory)."""
    layout = cgroup_layout()
    if layout is None:
        return set()
    found: set[str] = set()
    for parent in layout.parents.values():
        with contextlib.suppress(OSError):
            found.update(entry.name for entry in os.scandir(parent) if entry.is_dir())
    return found


def make_cgroup(session_id: str, memory: int, cpus: int, pids_max: int) -> SessionCgroup | None:
    """Create the session's cgroup with its limits; None where there are no cgroups."""
    cgroup = session_cgroup(session_id)
    if cgroup is None:
        return None
    try:
        if cgroup.layout.version == 2:
            [path] = cgroup.dirs
            path.mkdir(exist_ok=True)
            (path / "memory.max").write_text(str(memory))
            # Swap would let the session grow past memory.max.
            _write_if_present(path / "memory.swap.max", "0")
            _write_if_present(path / "cpu.max", f"{cpus * _CPU_PERIOD_US} {_CPU_PERIOD_US}")
            _write_if_present(path / "cpu.weight", _v2_weight(cpus))
            _write_if_present(path / "pids.max", str(pids_max))
        else:
            for path in cgroup.dirs:
                path.mkdir(exist_ok=True)
            _v1_limits(cgroup, memory, cpus, pids_max)
    except OSError as exc:
        cgroup.remove()
        raise SpawnerError(f"Cannot set up the session's cgroup: {exc}") from exc
    return cgroup


def _v1_limits(cgroup: SessionCgroup, memory: int, cpus: int, pids_max: int) -> None:
    memory_dir = cgroup._dir("memory")
    assert memory_dir is not None  # a v1 layout always has memory
    (memory_dir / "memory.limit_in_bytes").write_text(str(memory))
    # memory+swap: without it, the session's pages would go to swap instead of being held.
    # (It must be at least memory.limit_in_bytes, so it is written second.)
    _write_if_present(memory_dir / "memory.memsw.limit_in_bytes", str(memory))
    cpu_dir = cgroup._dir("cpu")
    if cpu_dir is not None:
        period = int((cpu_dir / "cpu.cfs_period_us").read_text())
        (cpu_dir / "cpu.cfs_quota_us").write_text(str(cpus * period))
        _write_if_present(cpu_dir / "cpu.shares", _v1_shares(cpus))
    pids_dir = cgroup._dir("pids")
    if pids_dir is not None:
        (pids_dir / "pids.max").write_text(str(pids_max))


def _write_if_present(path: Path, value: str) -> None:
    if path.exists():
        path.write_text(value)


def cgroup_kill(
    cgroup: SessionCgroup, grace_seconds: float, kill_seconds: float = 10.0
) -> set[int]:
    """SIGTERM every process of the session, SIGKILL what is left after the grace, remove the
    cgroup; return the pids that survived (none, unless the kernel is stuck).

    A process forked meanwhile joins the same cgroup, so the loop reads the list again until
    it is empty: nothing escapes, whichever session or process group it made for itself.
    """
    pids = cgroup.pids()
    deadline = time.monotonic() + grace_seconds
    _send(pids, signal.SIGTERM)
    while pids and time.monotonic() < deadline:
        time.sleep(_KILL_POLL_SECONDS)
        pids = cgroup.pids()
    deadline = time.monotonic() + kill_seconds
    while pids and time.monotonic() < deadline:
        _send(pids, signal.SIGKILL)
        time.sleep(_KILL_POLL_SECONDS)
        pids = cgroup.pids()
    if not pids:
        # Zombies may stay a moment in cgroup.procs until their parent (or init) reaps them.
        for _ in range(50):
            if not _any_procs(cgroup):
                break
            time.sleep(_KILL_POLL_SECONDS)
        cgroup.remove()
    return pids


def _any_procs(cgroup: SessionCgroup) -> bool:
    for path in cgroup.dirs:
        with contextlib.suppress(OSError):
            if (path / "cgroup.procs").read_text().strip():
                return True
    return False


def _send(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def cpu_set(count: int, spread: int) -> set[int]:
    """``count`` of the CPUs this process may use, rotated by ``spread`` so that sessions do
    not all take the first ones (the rlimits fallback only)."""
    available = sorted(os.sched_getaffinity(0))
    count = max(1, min(count, len(available)))
    return {available[(spread + i) % len(available)] for i in range(count)}


def limiter(memory: int, cpus: set[int], cgroup: SessionCgroup | None) -> Callable[[], None]:
    """The function to run between fork and exec: join the cgroup, or else set the rlimits."""
    procs = [] if cgroup is None else [str(path / "cgroup.procs") for path in cgroup.dirs]

    def apply_limits() -> None:
        # Runs in the child between fork and exec, where another thread's locks may be held:
        # only system calls on values computed beforehand, no logging, no imports.
        for path in procs:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")  # "0" moves the writing process itself
            finally:
                os.close(fd)
        if not procs:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            os.sched_setaffinity(0, cpus)

    return apply_limits


def enforcement() -> str:
    """Which whole-session limits are in force: ``cgroup v2``, ``cgroup v1`` or ``rlimits``."""
    layout = cgroup_layout()
    return "rlimits" if layout is None else layout.label()
