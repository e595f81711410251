"""The scratch rules on real trees: per-user quota (largest or oldest first, down to the
low-water mark and not a byte further), the shared maximum across users (least recently
modified first), dry runs, and what is reported to the suspension rules."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User

from storage_app import scratch as services
from storage_app.accounts import storage_account_for
from storage_app.lease import StorageBusy
from storage_app.models import CleanupRun, RemovalRecord, StorageAccount, StorageLock
from storage_app.scratch import scratch_enforce_shared, scratch_enforce_user
from suspension_app.models import RuleEvent, Suspension
from tests.conftest import _make_user
from tests.storage_app.test_services import (
    KB,
    PAST,
    T0,
    allocated,
    files_under,
    home_of,
    put,
    scratch_of,
    usage,
)

pytestmark = pytest.mark.django_db

QUOTA_EXCEEDED = RuleEvent.Kind.SCRATCH_QUOTA_EXCEEDED
CIRCUMVENTION = RuleEvent.Kind.CLEANUP_CIRCUMVENTION


def _quota(user: User, quota: int) -> None:
    account = storage_account_for(user)
    StorageAccount.objects.filter(pk=account.pk).update(scratch_quota_bytes=quota)


def _five_files(root: Path) -> dict[str, Path]:
    """Five files of 5, 4, 3, 2 and 1 blocks; the biggest is the newest, the smallest the
    oldest, so the two policies pick different files."""
    return {
        name: put(root, name, blocks=blocks, mtime=PAST - timedelta(days=days))
        for name, blocks, days in (
            ("e5", 5, 1),
            ("sub/d4", 4, 2),
            ("c3", 3, 3),
            ("sub/deeper/b2", 2, 4),
            ("a1", 1, 5),
        )
    }


def _records(user: User) -> set[str]:
    return set(RemovalRecord.objects.filter(user=user).values_list("path", flat=True))


# --- One user's quota -------------------------------------------------------------------------


def test_over_quota_the_largest_files_go_until_usage_is_under_the_low_water_mark(
    owner: User, settings: Any
) -> None:
    # Given five files, a quota one byte under the usage and a low-water mark at 60 %
    root = scratch_of(owner)
    files = _five_files(root)
    used = usage(root)
    _quota(owner, used - 1)
    settings.STORAGE_SCRATCH_LOW_WATER = 0.6
    target = int((used - 1) * 0.6)
    # (the two largest are needed: the largest alone is not enough)
    assert used - allocated(files["e5"]) > target >= used - 9 * KB
    # When the quota is enforced
    report = scratch_enforce_user(owner)
    # then exactly the two largest are gone, and recorded with their rule
    assert files_under(root) == {"c3", "sub/deeper/b2", "a1"}
    assert _records(owner) == {"e5", "sub/d4"}
    assert set(RemovalRecord.objects.values_list("rule", flat=True)) == {"scratch_quota_largest"}
    assert (report.files_removed, report.bytes_freed) == (2, 9 * KB)
    assert report.after_bytes == usage(root) <= target
    record = RemovalRecord.objects.get(path="e5")
    assert (record.size, record.area) == (5 * KB, "scratch")
    assert record.mtime == PAST - timedelta(days=1)
    # and the run says what was found and done
    run = CleanupRun.objects.get()
    assert (run.kind, run.user, run.dry_run) == ("scratch_user", owner, False)
    assert (run.used_bytes, run.files_removed, run.bytes_freed) == (used, 2, 9 * KB)
    assert run.finished_at is not None


def test_removal_stops_exactly_at_the_low_water_mark_and_not_a_byte_further(
    owner: User, settings: Any
) -> None:
    # Given a low-water mark equal to the quota, which is exactly the largest file too much
    root = scratch_of(owner)
    files = _five_files(root)
    settings.STORAGE_SCRATCH_LOW_WATER = 1.0
    _quota(owner, usage(root) - allocated(files["e5"]))
    # When enforced, the largest file alone brings usage to the mark: nothing else goes
    scratch_enforce_user(owner)
    assert files_under(root) == {"sub/d4", "c3", "sub/deeper/b2", "a1"}


def test_one_byte_over_the_mark_takes_the_next_largest_file_too(owner: User, settings: Any) -> None:
    root = scratch_of(owner)
    files = _five_files(root)
    settings.STORAGE_SCRATCH_LOW_WATER = 1.0
    _quota(owner, usage(root) - allocated(files["e5"]) - 1)
    scratch_enforce_user(owner)
    assert files_under(root) == {"c3", "sub/deeper/b2", "a1"}


def test_the_oldest_policy_removes_the_least_recently_modified_first(
    owner: User, settings: Any
) -> None:
    # Given the oldest-first policy and a mark that needs 3 blocks freed
    settings.STORAGE_SCRATCH_POLICY = "oldest"
    settings.STORAGE_SCRATCH_LOW_WATER = 1.0
    root = scratch_of(owner)
    _five_files(root)
    _quota(owner, usage(root) - 3 * KB)
    # When enforced: a1 (oldest, 1 block) then b2 (2 blocks) make exactly 3
    scratch_enforce_user(owner)
    assert files_under(root) == {"e5", "sub/d4", "c3"}
    assert _records(owner) == {"a1", "sub/deeper/b2"}
    assert set(RemovalRecord.objects.values_list("rule", flat=True)) == {"scratch_quota_oldest"}


def test_within_quota_nothing_is_removed_nor_reported(owner: User) -> None:
    root = scratch_of(owner)
    _five_files(root)
    _quota(owner, usage(root))  # exactly at the quota is within it
    report = scratch_enforce_user(owner)
    assert not report.over
    assert len(files_under(root)) == 5
    assert not CleanupRun.objects.exists() and not RemovalRecord.objects.exists()
    assert not RuleEvent.objects.exists()
    # and the measurement is kept
    assert StorageAccount.objects.get(user=owner).scratch_bytes == usage(root)


def test_more_files_than_one_pass_keeps_are_taken_over_several_passes(
    owner: User, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given scans that keep only 2 candidates, and a mark that needs the 4 largest gone
    monkeypatch.setattr(services, "CANDIDATES_PER_PASS", 2)
    settings.STORAGE_SCRATCH_LOW_WATER = 1.0
    root = scratch_of(owner)
    _five_files(root)
    _quota(owner, usage(root) - 14 * KB)
    # When enforced
    scratch_enforce_user(owner)
    # then it scanned again for the next ones, and stopped when enough was gone
    assert files_under(root) == {"a1"}
    assert len(_records(owner)) == 4


def test_symlinks_are_never_followed_nor_removed(
    owner: User, other_user: User, settings: Any, tmp_path: Path
) -> None:
    # Given the owner's scratch with links to another user's big file and to a stand-in /etc,
    # and a folder link, all bigger than anything the owner has
    theirs = put(scratch_of(other_user), "precious", blocks=50)
    etc = tmp_path / "etc"
    put(etc, "passwd", blocks=40)
    root = scratch_of(owner)
    put(root, "mine", blocks=3)
    put(root, "small", blocks=1)
    os.symlink(theirs, root / "link-to-theirs")
    os.symlink(etc / "passwd", root / "link-to-etc")
    os.symlink(etc, root / "etc")
    settings.STORAGE_SCRATCH_LOW_WATER = 1.0
    _quota(owner, usage(root) - 1)
    # When the owner's quota is enforced
    scratch_enforce_user(owner)
    # then only the owner's own largest regular file went; links and targets are untouched
    assert files_under(root) == {"small"}
    assert theirs.exists() and (etc / "passwd").exists()
    assert os.path.islink(root / "link-to-theirs") and os.path.islink(root / "etc")


def test_a_name_that_is_not_utf8_is_removed_and_recorded_escaped(
    owner: User, settings: Any
) -> None:
    root = scratch_of(owner)
    put(root, b"caf\xe9-latin1.dat", blocks=4)
    put(root, "keep", blocks=1)
    settings.STORAGE_SCRATCH_LOW_WATER = 1.0
    _quota(owner, usage(root) - 1)
    scratch_enforce_user(owner)
    assert files_under(root) == {"keep"}
    assert _records(owner) == {"caf\\xe9-latin1.dat"}


def test_a_dry_run_changes_nothing_and_says_what_would_go(owner: User, settings: Any) -> None:
    # Given a user over quota
    root = scratch_of(owner)
    _five_files(root)
    settings.STORAGE_SCRATCH_LOW_WATER = 0.6
    used = usage(root)
    _quota(owner, used - 1)
    before = {name: os.lstat(root / name).st_mtime_ns for name in files_under(root)}
    # When a dry run enforces the quota
    report = scratch_enforce_user(owner, dry_run=True)
    # then every file is still there, unchanged; nothing is recorded or reported
    assert {name: os.lstat(root / name).st_mtime_ns for name in files_under(root)} == before
    assert not RemovalRecord.objects.exists()
    assert not RuleEvent.objects.exists()
    assert StorageAccount.objects.get(user=owner).scratch_bytes is None  # no measurement either
    # but the report names what a real run would remove, and the run is marked as a dry run
    assert [item.path for item in report.examples] == ["e5", "sub/d4"]
    assert report.dry_run and report.over and report.files_removed == 2
    assert CleanupRun.objects.get().dry_run


# --- Reports to the suspension rules ----------------------------------------------------------


def test_each_enforcement_over_quota_reports_once_and_the_third_within_the_window_suspends(
    owner: User, settings: Any
) -> None:
    # Given the default rule: 3 violations within 24 hours
    settings.SUSPENSION_SCRATCH_VIOLATIONS = 3
    root = scratch_of(owner)
    for hours in (0, 5, 10):
        # When the user fills the scratch over the quota again, and a sweep enforces it
        put(root, f"refill-{hours}", blocks=20)
        _quota(owner, usage(root) - 1)
        with time_machine.travel(T0 + timedelta(hours=hours), tick=False):
            scratch_enforce_user(owner)
        # then every enforcement reported exactly one violation
        assert RuleEvent.objects.filter(user=owner, kind=QUOTA_EXCEEDED).count() == (hours // 5 + 1)
    # and the third suspended the user
    suspension = Suspension.objects.get(user=owner)
    assert suspension.rule == "repeated_scratch_quota" and suspension.is_active


def test_a_modification_time_in_the_future_is_reported_as_circumvention_and_suspends(
    owner: User, settings: Any
) -> None:
    # Given a scratch file dated a year ahead (to dodge the oldest-first cleanups), and the
    # default threshold of one attempt
    settings.SUSPENSION_CIRCUMVENTION_EVENTS = 1
    root = scratch_of(owner)
    put(root, "normal", blocks=1)
    with time_machine.travel(T0, tick=False):
        put(root, "forever/young.nc", blocks=1, mtime=T0 + timedelta(days=365))
        # When the (within-quota) scratch is checked
        report = scratch_enforce_user(owner)
    # then the attempt is reported with the path, and the user is suspended
    assert report.future_mtimes == ["forever/young.nc"]
    event = RuleEvent.objects.get(user=owner, kind=CIRCUMVENTION)
    assert event.details["paths"] == ["forever/young.nc"]
    assert Suspension.objects.get(user=owner).rule == "cleanup_circumvention"
    assert not RuleEvent.objects.filter(kind=QUOTA_EXCEEDED).exists()


def test_a_modification_time_within_the_slack_is_not_circumvention(owner: User) -> None:
    root = scratch_of(owner)
    with time_machine.travel(T0, tick=False):
        put(root, "clock-skew", blocks=1, mtime=T0 + timedelta(minutes=30))
        scratch_enforce_user(owner)
    assert not RuleEvent.objects.exists()


def test_a_failing_report_is_logged_and_the_cleanup_still_completes(
    owner: User, settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    # Given suspension rules that fail
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("rules are down")

    monkeypatch.setattr("suspension_app.rules.suspension_report", broken)
    root = scratch_of(owner)
    _five_files(root)
    settings.STORAGE_SCRATCH_LOW_WATER = 1.0
    _quota(owner, usage(root) - 1)
    # When enforced
    with caplog.at_level(logging.ERROR, logger="storage_app.services"):
        report = scratch_enforce_user(owner)
    # then the cleanup was done and recorded, and the failure logged
    assert report.files_removed == 1 and "e5" not in files_under(root)
    assert RemovalRecord.objects.count() == 1
    assert "could not report scratch_quota_exceeded" in caplog.text


# --- Concurrency --------------------------------------------------------------------------------


def test_a_cleanup_does_not_start_while_another_holds_the_lease(owner: User) -> None:
    # Given another worker's cleanup in progress
    StorageLock.objects.create(name="scratch", holder="other", expires_at=T0 + timedelta(days=1))
    root = scratch_of(owner)
    put(root, "big", blocks=5)
    _quota(owner, 0)
    # When a second cleanup starts, it refuses (a dry run, which removes nothing, still runs)
    with time_machine.travel(T0, tick=False):
        with pytest.raises(StorageBusy):
            scratch_enforce_user(owner)
        assert scratch_enforce_user(owner, dry_run=True).files_removed == 1
    assert files_under(root) == {"big"}


def test_an_expired_lease_is_taken_over_and_released_afterwards(owner: User) -> None:
    StorageLock.objects.create(name="scratch", holder="lost", expires_at=T0 - timedelta(hours=1))
    with time_machine.travel(T0, tick=False):
        scratch_enforce_user(owner)
    assert not StorageLock.objects.exists()


# --- The shared maximum -----------------------------------------------------------------------


def _shared_cast(owner: User, other_user: User) -> tuple[User, dict[str, Path]]:
    """Three users, their files' ages interleaved (days old: the number after the name)."""
    third = _make_user("third")
    layout = {
        owner: [("o-90", 90), ("data/o-30", 30), ("o-5", 5)],
        other_user: [("t-80", 80), ("t-40", 40), ("deep/er/t-1", 1)],
        third: [("h-60", 60), ("h-20", 20)],
    }
    files = {}
    for user, entries in layout.items():
        root = scratch_of(user)
        for rel, days in entries:
            files[rel] = put(root, rel, blocks=2, mtime=PAST - timedelta(days=days))
    return third, files


def _total(*users: User) -> int:
    return sum(usage(scratch_of(user)) for user in users)


def test_over_the_shared_maximum_the_least_recently_modified_go_across_users(
    owner: User, other_user: User, settings: Any
) -> None:
    # Given three users' scratch, and a maximum that the whole exceeds, with a low-water mark
    # that needs 4 files (8 blocks) freed
    third, files = _shared_cast(owner, other_user)
    total = _total(owner, other_user, third)
    settings.STORAGE_SHARED_SCRATCH_MAX_BYTES = total - 1
    settings.STORAGE_SHARED_SCRATCH_LOW_WATER = (total - 8 * KB) / (total - 1)
    assert int((total - 1) * settings.STORAGE_SHARED_SCRATCH_LOW_WATER) == total - 8 * KB
    # When the shared cleanup runs
    with time_machine.travel(T0, tick=False):
        report = scratch_enforce_shared()
    # then the four oldest across all users went: 90, 80, 60 and 40 days old
    gone = {rel for rel, path in files.items() if not path.exists()}
    assert gone == {"o-90", "t-80", "h-60", "t-40"}
    assert files_under(scratch_of(owner)) == {"data/o-30", "o-5"}
    assert files_under(scratch_of(other_user)) == {"deep/er/t-1"}
    assert files_under(scratch_of(third)) == {"h-20"}
    # each recorded for its owner, with the shared rule, under one run without a user
    assert _records(owner) == {"o-90"} and _records(other_user) == {"t-80", "t-40"}
    assert _records(third) == {"h-60"}
    assert set(RemovalRecord.objects.values_list("rule", flat=True)) == {"scratch_shared_lru"}
    run = CleanupRun.objects.get()
    assert (run.kind, run.user, run.files_removed) == ("scratch_shared", None, 4)
    assert report.after_bytes == _total(owner, other_user, third)


def test_the_shared_cleanup_merges_users_within_a_bounded_number_of_candidates(
    owner: User, other_user: User, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given candidates kept 2 at a time (per user and merged), and 5 files to free
    monkeypatch.setattr(services, "CANDIDATES_PER_PASS", 2)
    third, files = _shared_cast(owner, other_user)
    total = _total(owner, other_user, third)
    settings.STORAGE_SHARED_SCRATCH_MAX_BYTES = total
    settings.STORAGE_SHARED_SCRATCH_LOW_WATER = 1.0
    put(scratch_of(third), "h-new", blocks=10, mtime=PAST)  # 10 blocks over: 5 files of 2 go
    with time_machine.travel(T0, tick=False):
        scratch_enforce_shared()
    gone = {rel for rel, path in files.items() if not path.exists()}
    assert gone == {"o-90", "t-80", "h-60", "t-40", "data/o-30"}
    assert (scratch_of(third) / "h-new").exists()


def test_under_the_shared_maximum_nothing_goes(
    owner: User, other_user: User, settings: Any
) -> None:
    third, files = _shared_cast(owner, other_user)
    settings.STORAGE_SHARED_SCRATCH_MAX_BYTES = _total(owner, other_user, third)
    report = scratch_enforce_shared()
    assert not report.over and all(path.exists() for path in files.values())
    assert not CleanupRun.objects.exists()


def test_a_shared_dry_run_changes_nothing(owner: User, other_user: User, settings: Any) -> None:
    third, files = _shared_cast(owner, other_user)
    total = _total(owner, other_user, third)
    settings.STORAGE_SHARED_SCRATCH_MAX_BYTES = total - 1
    settings.STORAGE_SHARED_SCRATCH_LOW_WATER = 1.0
    report = scratch_enforce_shared(dry_run=True)
    assert all(path.exists() for path in files.values())
    assert not RemovalRecord.objects.exists()
    assert [(item.username, item.path) for item in report.examples] == [("owner", "o-90")]


def test_the_shared_cleanup_never_touches_private_storage(
    owner: User, other_user: User, settings: Any
) -> None:
    # Given a very old file in the owner's home (private storage is not scratch)
    ancient = put(home_of(owner), "thesis.tex", blocks=2, mtime=PAST - timedelta(days=3000))
    third, files = _shared_cast(owner, other_user)
    settings.STORAGE_SHARED_SCRATCH_MAX_BYTES = _total(owner, other_user, third) - 1
    scratch_enforce_shared()
    assert ancient.exists()
    assert not files["o-90"].exists()
