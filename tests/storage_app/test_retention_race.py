"""Retention against a launch: the check of what protects a home and its removal from the
user's place happen under the account's row lock, so a launch either keeps the home or gets a
fresh one; the slow removal of the renamed folder runs afterwards, and is retried by later
sweeps when it fails."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.db import connection

from sessions_app.models import Environment
from sessions_app.selectors import session_active_for
from storage_app import retention as services
from storage_app.accounts import storage_account_for, storage_session_started
from storage_app.layout import home_ensure
from storage_app.models import RemovalRecord, StorageAccount
from storage_app.reports import RetentionOutcome
from storage_app.retention import private_retention_sweep
from tests.storage_app.test_services import T0, home_of, put
from tests.suspension_app.conftest import make_session

DUE = T0 + timedelta(days=32)  # past the deadline (T0 + 31 days), both warnings sent


def _due_home(user: User) -> Path:
    path = home_of(user)
    put(path, "notebook.ipynb", blocks=3)
    storage_account_for(user, T0)
    StorageAccount.objects.filter(user=user).update(retention_warnings_sent=[7, 1])
    return path


def _leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.parent.iterdir() if p.name.startswith(".deleting-"))


@pytest.fixture
def sweep(django_capture_on_commit_callbacks: Any) -> Callable[..., list[RetentionOutcome]]:
    def run(moment: datetime = DUE) -> list[RetentionOutcome]:
        with time_machine.travel(moment, tick=False):
            with django_capture_on_commit_callbacks(execute=True):
                return private_retention_sweep()

    return run


def _launch(user: User, home: Path) -> None:
    """What a launch does: a session and its storage_session_started, then the spawn's home."""
    environment = Environment.objects.first()
    assert environment is not None
    make_session(user, environment, state="running")
    storage_session_started(user)
    home_ensure(user)
    put(home, "new-work-in-session.ipynb", blocks=1)


@pytest.mark.django_db
def test_a_launch_during_the_removal_keeps_a_working_home(
    owner: User, monkeypatch: pytest.MonkeyPatch, sweep: Callable[..., list[RetentionOutcome]]
) -> None:
    # Given a home past its deadline, and a launch while its (slow) removal runs
    home = _due_home(owner)
    real = services._rmtree_under

    def launch_meanwhile(root: Path, name: str) -> list[str]:
        assert name.startswith(".deleting-") and not home.exists()
        _launch(owner, home)
        return real(root, name)

    monkeypatch.setattr(services, "_rmtree_under", launch_meanwhile)
    outcomes = sweep()
    # then the old home is deleted (recorded, announced), the session has a fresh home that
    # the removal did not touch, and the account counts from the launch
    assert [o.action for o in outcomes] == ["deleted"], outcomes
    assert session_active_for(owner) is not None
    assert sorted(p.name for p in home.iterdir()) == ["new-work-in-session.ipynb"]
    assert _leftovers(home) == []
    account = StorageAccount.objects.get(user=owner)
    assert account.private_deleted_at is None and account.delete_after > DUE
    assert RemovalRecord.objects.filter(user=owner).count() == 1
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_a_launch_before_the_claim_keeps_the_home(
    owner: User, monkeypatch: pytest.MonkeyPatch, sweep: Callable[..., list[RetentionOutcome]]
) -> None:
    # Given a launch after the sweep's first session check, before the claim (the repro)
    home = _due_home(owner)
    real = services._home_mtime

    def launch_meanwhile(path: Path) -> Any:
        _launch(owner, home)
        return real(path)

    monkeypatch.setattr(services, "_home_mtime", launch_meanwhile)
    outcomes = sweep()
    # then the claim sees it and nothing is removed
    assert [o.action for o in outcomes] == ["kept"], outcomes
    assert (home / "notebook.ipynb").exists() and (home / "new-work-in-session.ipynb").exists()
    assert _leftovers(home) == [] and mail.outbox == []
    assert StorageAccount.objects.get(user=owner).private_deleted_at is None


@pytest.mark.django_db
def test_a_failed_removal_is_finished_by_the_next_sweep(
    owner: User, monkeypatch: pytest.MonkeyPatch, sweep: Callable[..., list[RetentionOutcome]]
) -> None:
    # Given a removal that fails (left in place, as a permission error would)
    home = _due_home(owner)
    monkeypatch.setattr(services, "_rmtree_under", lambda root, name: [f"{name}: denied"])
    outcomes = sweep()
    # then the home is out of the user's place, in a .deleting-* folder
    assert [o.action for o in outcomes] == ["failed"], outcomes
    assert not home.exists()
    (leftover,) = _leftovers(home)
    assert (home.parent / leftover / "notebook.ipynb").exists()
    assert StorageAccount.objects.get(user=owner).private_deleted_at == DUE
    # and the next sweep removes it, leaving the users' folders alone
    monkeypatch.undo()
    other = put(home.parent / "u~999999", "keep", blocks=1)
    sweep(DUE + timedelta(days=1))
    assert _leftovers(home) == [] and other.exists()


@pytest.mark.django_db(transaction=True)
def test_a_launch_waits_for_the_claim_and_then_gets_a_fresh_home(
    owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a launch (its own connection) that comes in while the claim holds the account row
    home = _due_home(owner)
    real = services._rename_away
    launched = threading.Event()

    def launch() -> None:
        try:
            launched.set()
            storage_session_started(owner)
        finally:
            connection.close()

    thread = threading.Thread(target=launch)

    def rename_while_launching(root: Path, name: str) -> str | None:
        thread.start()
        launched.wait()
        time.sleep(0.5)
        assert thread.is_alive(), "the launch did not wait for the row lock"
        return real(root, name)

    monkeypatch.setattr(services, "_rename_away", rename_while_launching)
    with time_machine.travel(DUE, tick=False):
        outcomes = private_retention_sweep()
    thread.join(timeout=10)
    # then the launch went through after the claim: a fresh deadline, and its home is new
    assert not thread.is_alive()
    assert [o.action for o in outcomes] == ["deleted"], outcomes
    account = StorageAccount.objects.get(user=owner)
    assert account.private_deleted_at is None and account.delete_after > DUE
    assert not home.exists() and _leftovers(home) == []
    assert list(home_ensure(owner).iterdir()) == []
