"""Retention of private storage, with frozen time: warnings 7 and 1 days before the deadline
(each sent once), deletion after it (recorded, announced), and what protects a home."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail

from sessions_app.models import Environment
from storage_app.accounts import storage_account_for, storage_session_started
from storage_app.fs_remove import remove_tree as _rmtree_under
from storage_app.models import CleanupRun, RemovalRecord, StorageAccount
from storage_app.reports import RetentionOutcome
from storage_app.retention import private_retention_sweep
from suspension_app.services import suspension_impose
from tests.storage_app.test_services import T0, files_under, home_of, put, usage
from tests.suspension_app.conftest import make_session

pytestmark = pytest.mark.django_db

DEADLINE = T0 + timedelta(days=31)


@pytest.fixture
def home(owner: User) -> Path:
    """The owner's home with a few files, and an account whose deadline is DEADLINE."""
    path = home_of(owner)
    put(path, "notebook.ipynb", blocks=3)
    put(path, ".local/lib/python3.11/site-packages/pkg/__init__.py", blocks=2)
    storage_account_for(owner, T0)
    return path


@pytest.fixture
def sweep_at(
    django_capture_on_commit_callbacks: Any,
) -> Callable[..., list[RetentionOutcome]]:
    """Run the retention sweep at a moment, with its on-commit e-mails sent."""

    def run(moment: datetime, **kwargs: Any) -> list[RetentionOutcome]:
        with time_machine.travel(moment, tick=False):
            with django_capture_on_commit_callbacks(execute=True):
                return private_retention_sweep(**kwargs)

    return run


def _account(user: User) -> StorageAccount:
    return StorageAccount.objects.get(user=user)


def test_warnings_go_seven_and_one_days_before_the_deadline_once_each(
    owner: User, home: Path, sweep_at: Callable[..., list[RetentionOutcome]]
) -> None:
    # Eight days before: nothing yet
    assert sweep_at(DEADLINE - timedelta(days=8)) == []
    assert mail.outbox == []
    # Seven days before: the first warning, by e-mail
    outcomes = sweep_at(DEADLINE - timedelta(days=7))
    assert [o.action for o in outcomes] == ["warned"]
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["owner@example.org"]
    assert "deleted in 7 days" in message.subject
    assert "2031-04-01 08:00 UTC" in message.body
    # Every later sweep that week: no second copy
    for hours in (1, 24, 5 * 24):
        sweep_at(DEADLINE - timedelta(days=7) + timedelta(hours=hours))
    assert len(mail.outbox) == 1
    # One day before: the last warning, once
    sweep_at(DEADLINE - timedelta(days=1))
    sweep_at(DEADLINE - timedelta(hours=2))
    assert len(mail.outbox) == 2
    assert "deleted in 1 day " in mail.outbox[1].subject + " "
    assert _account(owner).retention_warnings_sent == [7, 1]
    # and the files are all still there
    assert len(files_under(home)) == 2


def test_after_the_deadline_the_home_is_deleted_recorded_and_announced(
    owner: User, home: Path, sweep_at: Callable[..., list[RetentionOutcome]]
) -> None:
    # Given both warnings sent
    size = usage(home)
    sweep_at(DEADLINE - timedelta(days=7))
    sweep_at(DEADLINE - timedelta(days=1))
    # Just before the deadline nothing happens
    sweep_at(DEADLINE - timedelta(seconds=1))
    assert home.exists()
    # When the sweep runs after it
    moment = DEADLINE + timedelta(minutes=10)
    outcomes = sweep_at(moment)
    # then the home is gone, recorded with its size under the retention rule
    assert [o.action for o in outcomes] == ["deleted"]
    assert not home.exists()
    record = RemovalRecord.objects.get(user=owner)
    assert (record.rule, record.area, record.path) == ("private_retention", "private", ".")
    assert (record.size, record.removed_at) == (size, moment)
    run = CleanupRun.objects.get(kind="private_retention")
    assert (run.user, run.files_removed, run.bytes_freed, run.errors) == (owner, 2, size, 0)
    assert _account(owner).private_deleted_at == moment
    # and the user is told
    assert "was deleted" in mail.outbox[-1].subject
    # A later sweep does nothing more
    assert sweep_at(moment + timedelta(days=1)) == []
    assert RemovalRecord.objects.count() == 1


def test_an_exempt_account_is_neither_warned_nor_deleted(
    owner: User, home: Path, sweep_at: Callable[..., list[RetentionOutcome]]
) -> None:
    StorageAccount.objects.filter(user=owner).update(
        retention_exempt=True, retention_exempt_reason="Project lead; uses the API only."
    )
    for moment in (DEADLINE - timedelta(days=7), DEADLINE + timedelta(days=100)):
        assert sweep_at(moment) == []
    assert home.exists() and mail.outbox == []


def test_an_active_session_protects_the_home(
    owner: User,
    home: Path,
    environment: Environment,
    sweep_at: Callable[..., list[RetentionOutcome]],
) -> None:
    # Given warnings sent, and a session running (say, started by staff tools, or one whose
    # start was not recorded): the deadline has passed
    sweep_at(DEADLINE - timedelta(days=7))
    sweep_at(DEADLINE - timedelta(days=1))
    make_session(owner, environment, "running")
    outcomes = sweep_at(DEADLINE + timedelta(hours=1))
    assert [(o.action, o.detail) for o in outcomes] == [("kept", "a session is active")]
    assert home.exists() and not RemovalRecord.objects.exists()


def test_a_suspended_users_home_is_kept_while_the_suspension_is_in_force(
    owner: User, staff: User, home: Path, sweep_at: Callable[..., list[RetentionOutcome]]
) -> None:
    suspension_impose(user=owner, reason="Investigating.", imposed_by=staff)
    mail.outbox.clear()
    sweep_at(DEADLINE + timedelta(days=3))
    assert home.exists() and mail.outbox == []


def test_starting_a_session_moves_the_deadline_and_warns_again_later(
    owner: User, home: Path, sweep_at: Callable[..., list[RetentionOutcome]]
) -> None:
    # Given the 7-day warning sent
    sweep_at(DEADLINE - timedelta(days=7))
    # When the user starts a session 3 days later
    started = DEADLINE - timedelta(days=4)
    storage_session_started(owner, started)
    # then the old deadline passes harmlessly
    assert sweep_at(DEADLINE + timedelta(days=1)) == []
    assert home.exists()
    # and the new one has its own warnings
    sweep_at(started + timedelta(days=31 - 7))
    assert len(mail.outbox) == 2


def test_a_deadline_reached_without_its_last_warning_is_postponed_not_kept_silent(
    owner: User, home: Path, sweep_at: Callable[..., list[RetentionOutcome]]
) -> None:
    # Given no sweep ran for weeks (no warning was sent), now past the deadline
    moment = DEADLINE + timedelta(days=5)
    outcomes = sweep_at(moment)
    # then the user is warned now and gets one more day, instead of losing the home at once
    assert [o.action for o in outcomes] == ["postponed"]
    assert home.exists()
    assert _account(owner).delete_after == moment + timedelta(days=1)
    assert len(mail.outbox) == 1 and "1 day" in mail.outbox[0].subject
    # and after that day it goes
    sweep_at(moment + timedelta(days=1, minutes=1))
    assert not home.exists()


def test_a_dry_run_deletes_and_sends_nothing(
    owner: User, home: Path, sweep_at: Callable[..., list[RetentionOutcome]]
) -> None:
    sweep_at(DEADLINE - timedelta(days=7))
    sweep_at(DEADLINE - timedelta(days=1))
    sent = len(mail.outbox)
    outcomes = sweep_at(DEADLINE + timedelta(hours=1), dry_run=True)
    assert [o.action for o in outcomes] == ["deleted"] and outcomes[0].dry_run
    assert "would delete" in outcomes[0].line()
    assert home.exists() and len(mail.outbox) == sent
    assert not RemovalRecord.objects.exists()
    assert _account(owner).private_deleted_at is None


def test_an_account_that_never_started_a_session_counts_from_its_creation(
    owner: User, sweep_at: Callable[..., list[RetentionOutcome]]
) -> None:
    # Given a home and no storage account yet: the first sweep that sees the user creates it
    path = home_of(owner)
    put(path, "file", blocks=1)
    # Without an account there is no deadline: even a long time later nothing happens
    assert sweep_at(T0) == []
    storage_account_for(owner, T0)
    assert sweep_at(DEADLINE - timedelta(days=8)) == []
    assert [o.action for o in sweep_at(DEADLINE - timedelta(days=7))] == ["warned"]


def test_a_user_without_a_home_is_neither_warned_nor_recorded(
    owner: User, sweep_at: Callable[..., list[RetentionOutcome]]
) -> None:
    storage_account_for(owner, T0)
    assert sweep_at(DEADLINE - timedelta(days=7)) == []
    assert sweep_at(DEADLINE + timedelta(days=1)) == []
    assert mail.outbox == [] and not RemovalRecord.objects.exists()


def test_deletion_never_follows_links_and_removes_read_only_folders(
    owner: User,
    other_user: User,
    home: Path,
    tmp_path: Path,
    sweep_at: Callable[..., list[RetentionOutcome]],
) -> None:
    # Given links out of the home (to another user's home, to a stand-in /etc, to a folder),
    # a read-only notebooks library, and a name that is not UTF-8
    theirs = put(home_of(other_user), "precious", blocks=1)
    etc = tmp_path / "etc"
    put(etc, "passwd", blocks=1)
    os.symlink(theirs, home / "theirs")
    os.symlink(etc, home / "etc-dir")
    os.symlink(etc / "passwd", home / "passwd")
    library = home / "notebooks-library"
    put(library, "intro/01.ipynb", blocks=1)
    (library / "intro/01.ipynb").chmod(0o444)
    (library / "intro").chmod(0o555)
    library.chmod(0o555)
    put(home, b"r\xe9sum\xe9.txt", blocks=1)
    sweep_at(DEADLINE - timedelta(days=7))
    sweep_at(DEADLINE - timedelta(days=1))
    # When the home is deleted
    outcomes = sweep_at(DEADLINE + timedelta(hours=1))
    # then it is gone entirely, and nothing it linked to was touched
    assert [o.action for o in outcomes] == ["deleted"], outcomes
    assert not home.exists()
    assert theirs.read_bytes() and (etc / "passwd").exists()
    assert home.parent.exists()  # the root of all homes stays


def test_a_home_swapped_for_a_link_is_not_followed(
    owner: User, home: Path, tmp_path: Path, sweep_at: Callable[..., list[RetentionOutcome]]
) -> None:
    # Given (an operator's mistake) the home replaced by a link to a folder elsewhere
    elsewhere = tmp_path / "elsewhere"
    put(elsewhere, "keep-me", blocks=1)
    shutil.rmtree(home)
    os.symlink(elsewhere, home)
    sweep_at(DEADLINE - timedelta(days=7))
    sweep_at(DEADLINE + timedelta(days=1))
    # then nothing is deleted there: a link is not a home
    assert (elsewhere / "keep-me").exists()
    assert os.path.islink(home)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the deletion as another user")
def test_an_unprivileged_deletion_makes_read_only_folders_writable_first() -> None:
    # Given a home owned by an unprivileged user, with read-only folders (as the notebooks
    # library is) and a user-made unreadable one
    base = Path(tempfile.mkdtemp(prefix="storage-unprivileged-"))  # pytest's is root-only
    base.chmod(0o755)
    root = base / "homes"
    home = root / "someone"
    put(home, "notebooks-library/a/b.ipynb", blocks=1)
    put(home, "locked/secret", blocks=1)
    for top, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(top, name), NOBODY, NOBODY)
    os.chown(root, NOBODY, NOBODY)
    for folder in (home / "notebooks-library/a", home / "notebooks-library"):
        folder.chmod(0o555)
    (home / "locked").chmod(0o000)
    # When that user deletes it (in a child process that became them)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            errors = _rmtree_under(root, "someone")
            os._exit(0 if not errors and not os.path.lexists(home) else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    # then everything went, in a second attempt after the folders were made writable
    assert os.waitstatus_to_exitcode(status) == 0
    assert not home.exists() and root.exists()
    shutil.rmtree(base)


NOBODY = 65534
