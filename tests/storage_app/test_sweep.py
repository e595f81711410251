"""One full storage pass: the ``storage_sweep`` command's output, dry runs, one user, the beat
task, and a failing user pushed aside."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import CommandError, call_command

from storage_app import sweep as services
from storage_app import tasks
from storage_app.models import RemovalRecord, StorageAccount, StorageLock
from storage_app.sweep import storage_sweep
from tests.storage_app.test_services import PAST, T0, files_under, home_of, put, scratch_of, usage

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command("storage_sweep", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def over_quota(owner: User, other_user: User, settings: Any) -> None:
    """The owner 4 blocks over a scratch quota with low-water 1.0; the other user within."""
    root = scratch_of(owner)
    put(root, "big.nc", blocks=4, mtime=PAST)
    put(root, "small.nc", blocks=1, mtime=PAST)
    put(home_of(owner), "notes.md", blocks=1)
    put(scratch_of(other_user), "fine", blocks=1, mtime=PAST)
    settings.STORAGE_SCRATCH_LOW_WATER = 1.0
    settings.STORAGE_SCRATCH_QUOTA_BYTES = usage(root) - 1


def test_the_command_prints_per_user_and_shared_what_it_did(
    owner: User, other_user: User, over_quota: None
) -> None:
    output = _run()
    assert "Storage sweep at " in output and "dry run" not in output
    owner_part = output.split("owner:")[1].split("other:")[0]
    assert "private 8.0 KB of 1.0 GB quota" in owner_part  # the folder and one file
    assert "over, removed 1 file(s) (16.0 KB)" in owner_part
    assert "removed big.nc (16.0 KB, modified 2024-03-01 08:00 UTC)" in owner_part
    assert "within the quota" in output.split("other:")[1]
    assert "shared scratch" in output and "within the maximum" in output
    # and it did it
    assert files_under(scratch_of(owner)) == {"small.nc"}
    assert RemovalRecord.objects.filter(user=owner, path="big.nc").exists()
    assert StorageAccount.objects.get(user=other_user).scratch_bytes is not None


def test_the_pass_sums_up_what_it_did_in_one_line(over_quota: None) -> None:
    assert storage_sweep().summary() == (
        "2 user(s); 1 scratch cleanup(s) removed 1 file(s) (16.0 KB); 0 retention "
        "warning(s), 0 private storage(s) deleted; 0 failure(s)"
    )


def test_a_dry_run_prints_what_it_would_do_and_changes_nothing(
    owner: User, over_quota: None
) -> None:
    output = _run("--dry-run")
    assert "(dry run: nothing is changed)" in output
    assert "would remove 1 file(s)" in output and "would remove big.nc" in output
    assert files_under(scratch_of(owner)) == {"big.nc", "small.nc"}
    assert not RemovalRecord.objects.exists()
    assert not StorageAccount.objects.exists()  # not even the accounts are made


def test_one_user_only(owner: User, other_user: User, over_quota: None) -> None:
    output = _run("--user", "other")
    assert "other:" in output and "owner:" not in output
    assert "shared scratch: not checked (one user only)" in output
    assert files_under(scratch_of(owner)) == {"big.nc", "small.nc"}


def test_an_unknown_user_is_a_clear_error(owner: User) -> None:
    with pytest.raises(CommandError, match="There is no user 'nobody-here'"):
        _run("--user", "nobody-here")


def test_the_command_refuses_while_another_cleanup_runs(owner: User) -> None:
    StorageLock.objects.create(name="scratch", holder="x", expires_at=T0 + timedelta(days=1))
    with time_machine.travel(T0, tick=False), pytest.raises(CommandError, match="Another"):
        _run()


def test_the_pass_warns_about_retention_too(
    owner: User, django_capture_on_commit_callbacks: Any
) -> None:
    # Given a home whose account was created 24 days ago
    put(home_of(owner), "notes.md", blocks=1)
    services.storage_account_for(owner, T0 - timedelta(days=24))
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=True):
        output = _run()
    assert "retention: warned: 7 day(s) before" in output
    assert len(mail.outbox) == 1


def test_a_failing_user_is_pushed_aside_and_the_pass_goes_on(
    owner: User, other_user: User, over_quota: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = services._enforce_user

    def flaky(user: Any, *args: Any, **kwargs: Any) -> Any:
        if user.get_username() == "other":
            raise OSError("disk on fire")
        return real(user, *args, **kwargs)

    monkeypatch.setattr(services, "_enforce_user", flaky)
    report = storage_sweep()
    assert [user.username for user in report.failures] == ["other"]
    assert "failed: OSError: disk on fire" in "\n".join(report.lines())
    assert files_under(scratch_of(owner)) == {"small.nc"}
    assert report.shared is not None


def test_the_beat_runs_the_sweep_task_every_period_with_an_expiry() -> None:
    entry: dict[str, Any] = django_settings.CELERY_BEAT_SCHEDULE["storage-sweep"]
    assert entry["task"] == "storage_app.tasks.sweep"
    assert entry["schedule"] == timedelta(minutes=django_settings.STORAGE_SWEEP_MINUTES)
    assert entry["options"]["expires"] == django_settings.STORAGE_SWEEP_MINUTES * 60


def test_the_tasks_call_the_services(owner: User, over_quota: None) -> None:
    tasks.scan_user(owner.pk)
    assert StorageAccount.objects.get(user=owner).scratch_bytes == usage(scratch_of(owner))
    tasks.enforce_user(owner.pk)
    assert files_under(scratch_of(owner)) == {"small.nc"}
    tasks.scan_user(10_000)  # gone: logged, no error
    tasks.enforce_user(10_000)
    tasks.sweep()
    assert not StorageLock.objects.exists()
