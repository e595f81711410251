"""Keep the portal's processes running: start each child, restart one that dies, stop all.

``runportal`` gives a :class:`Supervisor` its children as a plain dict, name -> :class:`Child`,
started in the dict's order (a broker before the worker that needs it) and stopped in the
reverse order (the worker hands its unfinished tasks back to the broker before the broker
goes). A child that dies is restarted after a back-off that doubles with each quick death, up to
a cap; one that ran for a while starts again from the shortest delay. A child that dies takes
what it started with it (its process group: a gunicorn master's workers), and the other children
run on. Only a stop request (Ctrl+C, SIGTERM) ends the supervisor, and then every child.

A child with a ``log`` writes its output (stdout and stderr) to that file of its own, appended
to and created 0600 in a 0700 folder; the supervisor's line about its death carries the last
lines of it, so that what made a process fail is where the operator looks.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from portal.private_files import FILE_MODE, make_private_dir

logger = logging.getLogger("portal.supervisor")

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Child:
    """One process of the portal.

    ``env``: variables added to the supervisor's environment. ``prepare``: called before every
    start (write a configuration, make a folder); an exception there counts as a failed start.
    ``ready``: a check that the child serves (its socket answers); the children after it start
    only once it holds, or after ``ready_timeout`` seconds, whichever comes first.
    """

    command: Sequence[str]
    env: Mapping[str, str] | None = None
    prepare: Callable[[], None] | None = None
    ready: Callable[[], bool] | None = None
    ready_timeout: float = 10.0
    stop_signal: int = signal.SIGTERM
    # Where the child's stdout and stderr go (appended); None: the supervisor's own.
    log: Path | None = None


@dataclass(frozen=True)
class Backoff:
    """Delay before restarting a child after its ``failures``-th quick death in a row."""

    initial: float = 1.0
    cap: float = 30.0
    # A child that ran this long before it died is not crash-looping: the count starts over.
    stable_after: float = 60.0

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return float(min(self.cap, self.initial * 2 ** (failures - 1)))

    def failures_after(self, failures: int, ran_for: float) -> int:
        """The count of quick deaths in a row, given one more death after ``ran_for`` s."""
        return 1 if ran_for >= self.stable_after else failures + 1


def describe_exit(returncode: int) -> str:
    """``exit code 3`` or ``killed by SIGKILL (-9)``: what a log line says of an ended child."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name} ({returncode})"
    return f"exit code {returncode}"


def end_group(leader: int) -> None:
    """SIGKILL what is left of the process group that ``leader`` (a child, ended) led.

    Each child leads a group of its own; a child killed outright leaves its own children running
    there: a gunicorn master's workers go on serving a socket the next master replaces, holding
    their memory and database connections for ever. The group's id cannot have been given to
    another process while any of them lives (the kernel does not reuse it). Sessions' servers
    are not in it: the back-ends start each in a session of its own.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)


def open_log(path: Path) -> int:
    """A descriptor appending to ``path``, made 0600 (in a 0700 folder) if it is new: opened
    again at each start, so a log moved away (rotated) is started afresh."""
    make_private_dir(path.parent)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, FILE_MODE)


def log_tail(path: Path | None, lines: int = 5, limit: int = 4096) -> str:
    """The last ``lines`` lines of ``path`` (from its last ``limit`` bytes), indented; empty
    without a log."""
    if path is None:
        return ""
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - limit))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    last = [line for line in text.splitlines() if line.strip()][-lines:]
    return "".join(f"\n    {line}" for line in last)


def _die_with_parent() -> None:
    # A supervisor killed outright (SIGKILL) must not leave its children serving the port or
    # taking tasks: the kernel sends them SIGTERM when it goes.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class _Slot:
    child: Child
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None  # when a dead child is due to start again
    restarts: int = 0


@dataclass
class Supervisor:
    """Runs ``children`` (started in order, stopped in reverse) until asked to stop."""

    children: Mapping[str, Child]
    cwd: Path | str | None = None
    backoff: Backoff = field(default_factory=Backoff)
    stop_timeout: float = 15.0
    poll_interval: float = 0.2
    clock: Callable[[], float] = time.monotonic
    _slots: dict[str, _Slot] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._slots = {name: _Slot(child) for name, child in self.children.items()}

    # --- reading ---------------------------------------------------------------------------

    def pid(self, name: str) -> int | None:
        process = self._slots[name].process
        return process.pid if process is not None and process.poll() is None else None

    def restarts(self, name: str) -> int:
        return self._slots[name].restarts

    # --- running ---------------------------------------------------------------------------

    def start_all(self) -> None:
        """Start every child in order, each after the ones before it are ready."""
        for name in self._slots:
            self._start(name)
            self._wait_ready(name)

    def check(self) -> None:
        """One pass: note children that died (scheduling their restart), start those due."""
        now = self.clock()
        for name, slot in self._slots.items():
            process = slot.process
            if process is not None and process.poll() is not None:
                end_group(process.pid)
                ran_for = now - slot.started_at
                slot.failures = self.backoff.failures_after(slot.failures, ran_for)
                delay = self.backoff.delay(slot.failures)
                slot.process, slot.restart_at = None, now + delay
                tail = log_tail(slot.child.log)
                logger.error(
                    "%s (pid %s) ended with %s after %.1f s; restarting in %.1f s%s",
                    name, process.pid, describe_exit(process.returncode), ran_for, delay,
                    f"; the end of {slot.child.log}:{tail}" if tail else "",
                )  # fmt: skip
            if slot.process is None and slot.restart_at is not None and now >= slot.restart_at:
                slot.restarts += 1
                self._start(name)

    def run(
        self, should_stop: Callable[[], bool], on_started: Callable[[], None] | None = None
    ) -> None:
        """Start everything (then call ``on_started``), keep it running until
        ``should_stop()``, then stop everything."""
        try:
            self.start_all()
            if on_started is not None:
                on_started()
            while not should_stop():
                self.check()
                time.sleep(self.poll_interval)
        finally:
            self.stop_all()

    def stop_all(self) -> None:
        """Stop the children in reverse order: its stop signal, then SIGKILL after a timeout."""
        for name in reversed(list(self._slots)):
            slot = self._slots[name]
            slot.restart_at = None
            process, slot.process = slot.process, None
            if process is None:
                continue
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(slot.child.stop_signal)
                try:
                    process.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    logger.warning("%s did not stop in %.0f s: killing it", name, self.stop_timeout)
                    process.kill()
                    process.wait()
            end_group(process.pid)
            logger.info("%s stopped (%s)", name, describe_exit(process.returncode))

    # --- inside ----------------------------------------------------------------------------

    def _start(self, name: str) -> None:
        slot = self._slots[name]
        child = slot.child
        slot.started_at, slot.restart_at = self.clock(), None
        output: int | None = None
        try:
            if child.prepare is not None:
                child.prepare()
            if child.log is not None:
                output = open_log(child.log)
            slot.process = subprocess.Popen(
                list(child.command),
                cwd=self.cwd,
                env={**os.environ, **(child.env or {})},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=None if output is None else subprocess.STDOUT,
                # A group of its own: Ctrl+C in the terminal reaches the supervisor alone, which
                # then stops the children in order.
                process_group=0,
                preexec_fn=_die_with_parent,
            )
        except Exception as exc:  # a failed start is retried like a death, with back-off
            slot.failures += 1
            delay = self.backoff.delay(slot.failures)
            slot.process, slot.restart_at = None, self.clock() + delay
            logger.error("%s could not start: %s; retrying in %.1f s", name, exc, delay)
            return
        finally:
            if output is not None:
                os.close(output)  # the child has its own copy
        logger.info("%s started (pid %s)", name, slot.process.pid)

    def _wait_ready(self, name: str) -> None:
        slot = self._slots[name]
        check = slot.child.ready
        if check is None or slot.process is None:
            return
        deadline = self.clock() + slot.child.ready_timeout
        while self.clock() < deadline and slot.process.poll() is None:
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.05)
        logger.warning("%s is not ready after %.0f s; going on", name, slot.child.ready_timeout)
