"""The supervisor of runportal's children (portal/supervisor.py), with real child processes:
a child that dies is restarted with back-off and logged; a stop request stops them all."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from portal.supervisor import Backoff, Child, Supervisor, describe_exit

PYTHON = sys.executable
SLEEPER = [PYTHON, "-c", "import time; time.sleep(600)"]


class FakeClock:
    """The supervisor's clock, moved by the test: back-off delays without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    made: list[Supervisor] = []
    yield made
    for supervisor in made:
        supervisor.stop_all()


def wait_dead(supervisor: Supervisor, name: str, timeout: float = 30) -> None:
    """Until the child's process has ended (the supervisor has not looked yet)."""
    slot = supervisor._slots[name]
    assert slot.process is not None
    slot.process.wait(timeout)


def test_backoff_doubles_with_each_quick_death_up_to_the_cap() -> None:
    backoff = Backoff(initial=1.0, cap=30.0, stable_after=60.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_backoff_starts_over_after_a_child_ran_for_a_while() -> None:
    backoff = Backoff(initial=1.0, cap=30.0, stable_after=60.0)
    assert backoff.failures_after(5, ran_for=3.0) == 6
    assert backoff.failures_after(5, ran_for=60.0) == 1


def test_an_exit_is_described_by_its_code_or_its_signal() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "killed by SIGKILL (-9)"
    assert describe_exit(-15) == "killed by SIGTERM (-15)"


def test_a_child_that_keeps_dying_is_restarted_with_growing_delays_and_logged(
    clock: FakeClock, supervisors: list[Supervisor], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a supervisor whose one child exits with code 3 at once, every time
    caplog.set_level(logging.INFO, logger="portal.supervisor")
    crash = Child([PYTHON, "-c", "import sys; sys.exit(3)"])
    supervisor = Supervisor(
        {"crash": crash}, backoff=Backoff(initial=1.0, cap=4.0, stable_after=60.0), clock=clock
    )
    supervisors.append(supervisor)
    supervisor.start_all()
    first_pid = supervisor._slots["crash"].process.pid  # type: ignore[union-attr]

    delays = []
    for _ in range(4):
        # When it dies and the supervisor looks
        wait_dead(supervisor, "crash")
        clock.now += 0.5
        supervisor.check()
        restart_at = supervisor._slots["crash"].restart_at
        assert restart_at is not None
        delays.append(restart_at - clock.now)
        # then it is not started again before its delay ...
        restarts = supervisor.restarts("crash")
        clock.now += delays[-1] - 0.1
        supervisor.check()
        assert supervisor.restarts("crash") == restarts
        # ... and is once the delay is over
        clock.now += 0.1
        supervisor.check()
        assert supervisor.restarts("crash") == restarts + 1

    # The delays doubled up to the cap, and every death was logged with its exit code
    assert delays == [1.0, 2.0, 4.0, 4.0]
    deaths = [r.getMessage() for r in caplog.records if "ended with" in r.getMessage()]
    assert len(deaths) == 4
    assert f"crash (pid {first_pid}) ended with exit code 3 after 0.5 s" in deaths[0]
    assert all(r.levelno == logging.ERROR for r in caplog.records if "ended with" in r.message)


def test_a_killed_child_is_restarted_and_its_signal_logged(
    clock: FakeClock, supervisors: list[Supervisor], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a child that runs, and ran long enough to count as stable
    supervisor = Supervisor({"sleeper": Child(SLEEPER)}, clock=clock)
    supervisors.append(supervisor)
    supervisor.start_all()
    pid = supervisor.pid("sleeper")
    assert pid is not None
    clock.now += 120

    # When it is killed
    os.kill(pid, signal.SIGKILL)
    wait_dead(supervisor, "sleeper")
    supervisor.check()

    # then the supervisor says how it ended, and starts it again after the shortest delay
    assert f"sleeper (pid {pid}) ended with killed by SIGKILL (-9)" in caplog.text
    clock.now += Backoff().initial
    supervisor.check()
    new_pid = supervisor.pid("sleeper")
    assert new_pid is not None and new_pid != pid


def test_a_childs_output_goes_to_its_own_private_log_and_its_death_quotes_the_end(
    clock: FakeClock,
    supervisors: list[Supervisor],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    # Given a child with a log in a folder that does not exist yet, which writes to stdout and
    # stderr and then fails
    log = tmp_path / "log" / "crash.log"
    script = (
        "import sys; print('starting up'); print('no database here', file=sys.stderr); sys.exit(3)"
    )
    supervisor = Supervisor({"crash": Child([PYTHON, "-c", script], log=log)}, clock=clock)
    supervisors.append(supervisor)

    # When it starts and dies, and is started again
    supervisor.start_all()
    wait_dead(supervisor, "crash")
    supervisor.check()

    # then both streams are in its log, private from the start (folder 0700, file 0600)
    assert log.read_text().splitlines() == ["starting up", "no database here"]
    assert (log.parent.stat().st_mode & 0o777, log.stat().st_mode & 0o777) == (0o700, 0o600)
    # and the line about its death ends with the end of its log
    [death] = [r.getMessage() for r in caplog.records if "ended with" in r.getMessage()]
    assert death.endswith(f"; the end of {log}:\n    starting up\n    no database here")
    # A new start appends to the same log.
    clock.now += Backoff().initial
    supervisor.check()
    wait_dead(supervisor, "crash")
    assert log.read_text().count("starting up") == 2


# A child that starts a helper in its own process group and writes the helper's pid to
# $HELPER_PID: a gunicorn master and its workers.
MASTER = [
    PYTHON, "-c",
    "import os, pathlib, subprocess, sys, time; helper = subprocess.Popen(sys.argv[1:]); "
    "pathlib.Path(os.environ['HELPER_PID']).write_text(str(helper.pid)); time.sleep(600)",
    *SLEEPER,
]  # fmt: skip


def test_a_child_killed_outright_takes_its_own_children_and_the_others_run_on(
    clock: FakeClock, supervisors: list[Supervisor], tmp_path: Path
) -> None:
    # Given a child with a helper of its own, and another child
    helper_pid = tmp_path / "helper.pid"
    master = Child(MASTER, env={"HELPER_PID": str(helper_pid)})
    supervisor = Supervisor({"master": master, "other": Child(SLEEPER)}, clock=clock)
    supervisors.append(supervisor)
    supervisor.start_all()
    master_pid, other_pid = supervisor.pid("master"), supervisor.pid("other")
    assert master_pid is not None and other_pid is not None
    deadline = time.monotonic() + 30
    while not helper_pid.exists() or not helper_pid.read_text():
        assert time.monotonic() < deadline, "the child did not start its helper"
        time.sleep(0.05)
    helper = psutil.Process(int(helper_pid.read_text()))

    # When the child is killed outright (its helper lives on, as a gunicorn worker would)
    os.kill(master_pid, signal.SIGKILL)
    wait_dead(supervisor, "master")
    assert helper.is_running()
    supervisor.check()

    # then the helper goes with it, the other child runs on, and the child starts again
    helper.wait(10)
    assert supervisor.pid("other") == other_pid
    clock.now += Backoff().initial
    supervisor.check()
    assert supervisor.pid("master") not in (None, master_pid)


def test_a_child_that_cannot_start_is_tried_again_with_backoff(
    clock: FakeClock, supervisors: list[Supervisor], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a child whose program does not exist
    supervisor = Supervisor({"ghost": Child(["/nonexistent/program"])}, clock=clock)
    supervisors.append(supervisor)

    # When it is started, it fails and is scheduled again, not given up
    supervisor.start_all()
    assert "ghost could not start" in caplog.text
    assert supervisor.pid("ghost") is None
    clock.now += Backoff().initial
    supervisor.check()
    assert supervisor.restarts("ghost") == 1
    assert caplog.text.count("ghost could not start") == 2


_PATHS = "import os, pathlib, time; ready, seen = map(pathlib.Path, (os.environ['READY'], os.environ['SEEN']))"  # noqa: E501


def test_children_start_in_order_each_after_the_one_before_is_ready(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    # Given a first child that becomes ready a moment after it starts, and a second that
    # notes whether the first was ready when it started
    ready_file, seen = tmp_path / "ready", tmp_path / "seen"
    paths = {"READY": str(ready_file), "SEEN": str(seen)}
    slow = Child(
        [PYTHON, "-c", f"{_PATHS}; time.sleep(0.5); ready.touch(); time.sleep(600)"],
        env=paths,
        ready=ready_file.exists,
    )
    second = Child([PYTHON, "-c", f"{_PATHS}; seen.write_text(str(ready.exists()))"], env=paths)
    supervisor = Supervisor({"slow": slow, "second": second})
    supervisors.append(supervisor)

    # When both are started
    supervisor.start_all()
    wait_dead(supervisor, "second")

    # then the second started only once the first was ready
    assert seen.read_text() == "True"


_RUN_SUPERVISOR = """
import logging, signal, sys, threading
from portal.supervisor import Child, Supervisor
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
stubborn = [sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"]
children = {"first": Child(sleeper), "stubborn": Child(stubborn), "last": Child(sleeper)}
started = lambda: print("STARTED", flush=True)
Supervisor(children, stop_timeout=2.0).run(stop.is_set, on_started=started)
print("DONE", flush=True)
"""


@pytest.fixture
def supervisor_process() -> Iterator[tuple[subprocess.Popen[str], list[psutil.Process]]]:
    """A supervisor in a process of its own with three children (one ignores SIGTERM)."""
    process = subprocess.Popen(
        [PYTHON, "-c", textwrap.dedent(_RUN_SUPERVISOR)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("STARTED"):
            break
    children = psutil.Process(process.pid).children()
    assert len(children) == 3, "".join(lines)
    try:
        yield process, children
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for child in children:
            if child.is_running():
                child.kill()


def test_sigterm_stops_every_child_in_reverse_order_and_then_the_supervisor(
    supervisor_process: tuple[subprocess.Popen[str], list[psutil.Process]],
) -> None:
    process, children = supervisor_process

    # When the supervisor is asked to stop
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)

    # then every child is gone (the one ignoring SIGTERM killed after the timeout), the last
    # started is the first stopped, and the supervisor exits normally
    assert process.returncode == 0, out
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    stopped = [line.split()[0] for line in out.splitlines() if " stopped (" in line]
    assert stopped == ["last", "stubborn", "first"], out
    assert "stubborn did not stop in 2 s: killing it" in out
    assert out.rstrip().endswith("DONE")


def test_children_die_with_a_supervisor_killed_outright(
    supervisor_process: tuple[subprocess.Popen[str], list[psutil.Process]],
) -> None:
    process, children = supervisor_process
    stubborn = [c for c in children if "SIG_IGN" in " ".join(c.cmdline())]

    # When the supervisor gets SIGKILL (it can stop nothing itself)
    process.kill()
    process.wait()

    # then the kernel's SIGTERM takes its children down (save one that ignores it)
    _, alive = psutil.wait_procs([c for c in children if c not in stubborn], timeout=30)
    assert alive == []
