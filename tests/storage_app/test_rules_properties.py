"""Property: whatever the tree, the quota, the mark and the policy, a per-user cleanup removes
exactly the files the rule selects (the fewest in cleanup order that bring usage to the mark),
records exactly those, and leaves every other file as it was."""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage_app import scratch as services
from storage_app.accounts import storage_account_for
from storage_app.fs_types import path_text
from storage_app.layout import folder_name
from storage_app.models import RemovalRecord, StorageAccount
from storage_app.scratch import scratch_enforce_user
from tests.storage_app.test_services import PAST, files_under, put, usage

pytestmark = pytest.mark.django_db

FILES = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=6),  # blocks
        st.integers(min_value=0, max_value=4),  # days old: ties are likely, on purpose
        st.sampled_from(["", "a/", "a/b/", "c/"]),  # folder
        st.sampled_from([b"x", b"y", b"\xff", b"caf\xe9", "é".encode()]),  # name stem
    ),
    min_size=1,
    max_size=10,
)


def _cleanup_order(root: Path, names: list[bytes], policy: str) -> list[tuple[bytes, int]]:
    """(name, allocated bytes), in the policy's order, written out plainly."""
    stats = {name: os.lstat(os.path.join(os.fsencode(root), name)) for name in names}

    def key(name: bytes) -> tuple[object, ...]:
        st_ = stats[name]
        blocks = st_.st_blocks * 512
        if policy == "largest":
            return (-blocks, st_.st_mtime_ns, name)
        return (st_.st_mtime_ns, -blocks, name)

    return [(name, stats[name].st_blocks * 512) for name in sorted(names, key=key)]


def _expected(order: list[tuple[bytes, int]], used: int, target: int) -> set[bytes]:
    """The rule: in cleanup order, take files until usage is at or under the target."""
    chosen = set()
    for name, size in order:
        if used <= target:
            break
        chosen.add(name)
        used -= size
    return chosen


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    files=FILES,
    over=st.integers(min_value=1, max_value=40 * 4096),
    low_water=st.sampled_from([0.1, 0.5, 0.9, 1.0]),
    policy=st.sampled_from(["largest", "oldest"]),
    per_pass=st.sampled_from([1, 3, 10_000]),
    exact=st.none() | st.integers(min_value=1, max_value=10),
)
def test_exactly_the_selected_files_are_removed(
    owner: User,
    monkeypatch: pytest.MonkeyPatch,
    files: list[tuple[int, int, str, bytes]],
    over: int,
    low_water: float,
    policy: str,
    per_pass: int,
    exact: int | None,
) -> None:
    monkeypatch.setattr(services, "CANDIDATES_PER_PASS", per_pass)
    with tempfile.TemporaryDirectory() as base:
        root = Path(base) / "scratch" / folder_name(owner)
        names = []
        for index, (blocks, days, folder, stem) in enumerate(files):
            name = folder.encode() + stem + b"-%d" % index
            put(root, name, blocks=blocks, mtime=PAST - timedelta(days=days))
            names.append(name)
        used = usage(root)
        order = _cleanup_order(root, names, policy)
        if exact is not None:
            # The mark lands exactly where the first ``exact`` files leave usage: not one more.
            low_water = 1.0
            quota = used - sum(size for _, size in order[:exact])
        else:
            quota = max(0, used - over)
        target = int(quota * low_water)
        expected = _expected(order, used, target)
        before = {name: os.lstat(os.path.join(os.fsencode(root), name)) for name in names}
        account = storage_account_for(owner)
        StorageAccount.objects.filter(pk=account.pk).update(scratch_quota_bytes=quota)
        with override_settings(
            STORAGE_SCRATCH_ROOT=Path(base) / "scratch",
            STORAGE_SCRATCH_POLICY=policy,
            STORAGE_SCRATCH_LOW_WATER=low_water,
        ):
            report = scratch_enforce_user(owner)
        # Exactly the selected files are gone, the others untouched
        left = {os.fsencode(name) for name in files_under(root)}
        assert left == set(names) - expected
        for name in left:
            st_ = os.lstat(os.path.join(os.fsencode(root), name))
            assert (st_.st_ino, st_.st_mtime_ns) == (before[name].st_ino, before[name].st_mtime_ns)
        # and exactly those are recorded, under this run
        recorded = set(
            RemovalRecord.objects.filter(run_id=report.run_id).values_list("path", flat=True)
        )
        assert recorded == {path_text(name) for name in expected}
        assert report.bytes_freed == sum(before[name].st_blocks * 512 for name in expected)
        assert report.after_bytes == usage(root)
