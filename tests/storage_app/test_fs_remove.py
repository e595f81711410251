"""Removing scanned files: exactly the selected ones, and none whose path or identity changed.

Each test builds a real tree under ``tmp_path``: Alice's home (the root a cleanup works in),
Bob's home beside it, and a stand-in for ``/etc`` (the real one is never touched); it compares
snapshots of all three before and after. The snapshot helpers are shared with
``test_fs_properties.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storage_app.fs_remove import (
    BAD_PATH,
    CHANGED,
    DRY_RUN,
    NOT_REGULAR,
    SYMLINK_IN_PATH,
    VANISHED,
    remove_entries,
    remove_entry,
    would_remove,
)
from storage_app.fs_types import FileEntry, Removal
from tests.storage_app.descriptors import fds_into

NOBODY = 65534
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


@dataclasses.dataclass(frozen=True)
class Node:
    """One name in a snapshot: enough to tell that anything about it changed."""

    mode: int
    ino: int
    nlink: int
    size: int
    mtime_ns: int
    ctime_ns: int
    content: bytes  # a file's bytes, a symlink's target; empty for anything else


def snapshot(base: str | bytes | os.PathLike[str]) -> dict[bytes, Node]:
    """Every name under ``base`` (``b""`` for ``base`` itself), never following a symlink."""
    top = os.fsencode(base)
    nodes: dict[bytes, Node] = {}
    pending = [b""]
    while pending:
        rel = pending.pop()
        path = os.path.join(top, rel) if rel else top
        st = os.lstat(path)
        content = b""
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as file:
                content = file.read()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        nodes[rel] = Node(
            st.st_mode, st.st_ino, st.st_nlink, st.st_size, st.st_mtime_ns, st.st_ctime_ns, content
        )
        if stat.S_ISDIR(st.st_mode):
            pending.extend(os.path.join(rel, name) for name in os.listdir(path))
    return nodes


def assert_only_removed(
    before: dict[bytes, Node], after: dict[bytes, Node], removed: set[bytes]
) -> None:
    """``after`` is ``before`` without the names in ``removed``, everything else as it was.

    Except what unlinking a name must change: its folder's times, and the link count and
    ctime of the other names of a hard-linked file.
    """
    assert removed <= before.keys()
    assert sorted(after) == sorted(before.keys() - removed)
    gone_inodes = {before[path].ino for path in removed}
    folders = {os.path.dirname(path) for path in removed}
    changed = []
    for path, now in after.items():
        was = before[path]
        if path in folders:
            now = dataclasses.replace(now, mtime_ns=was.mtime_ns, ctime_ns=was.ctime_ns)
        elif stat.S_ISREG(was.mode) and was.ino in gone_inodes:
            now = dataclasses.replace(now, nlink=was.nlink, ctime_ns=was.ctime_ns)
        if now != was:
            changed.append(path)
    assert changed == []


def entry_for(root: str | bytes | os.PathLike[str], rel_path: bytes) -> FileEntry:
    """What a scan records for ``rel_path`` (from ``lstat``, as the scan does)."""
    st = os.lstat(os.path.join(os.fsencode(root), rel_path))
    return FileEntry(
        rel_path=rel_path,
        size=st.st_size,
        blocks_bytes=st.st_blocks * 512,
        mtime_ns=st.st_mtime_ns,
        dev=st.st_dev,
        ino=st.st_ino,
    )


def write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def hard_link_over(path: Path, target: Path) -> None:
    """Make ``path`` another name of ``target``: a file identical in every field removal checks.

    (A user could not link another user's file with ``fs.protected_hardlinks``; the tests take
    the strongest adversary anyway, for whom only the path checks stand in the way.)
    """
    path.unlink()
    os.link(target, path)


def swap_for_symlink(path: Path, target: Path) -> None:
    """What a user does between scan and removal: move the folder aside, link in its place."""
    path.rename(path.with_name(path.name + ".moved"))
    path.symlink_to(target)


@dataclasses.dataclass
class Cast:
    base: Path
    alice: Path  # the root every cleanup here works in
    bob: Path
    etc: Path


@pytest.fixture
def cast(tmp_path: Path) -> Cast:
    files = {
        "home/alice/notes.txt": b"alice's notes",
        "home/alice/data/big.bin": b"A" * 5000,
        "home/alice/data/small.txt": b"small",
        "home/alice/deep/a/b/c/file.txt": b"deep",
        "home/bob/data/big.bin": b"B" * 5000,
        "home/bob/projects/b/c/file.txt": b"bob's deep file",
        "home/bob/thesis.tex": b"bob's thesis",
        "etc/passwd": b"root:x:0:0:root:/root:/bin/bash\n",
        "etc/shadow": b"root:$6$not-a-real-hash:19000:0:99999:7:::\n",
    }
    for rel, content in files.items():
        write(tmp_path / rel, content)
    return Cast(tmp_path, tmp_path / "home/alice", tmp_path / "home/bob", tmp_path / "etc")


@pytest.mark.parametrize("as_type", [str, os.fsencode, Path], ids=["str", "bytes", "Path"])
def test_removes_exactly_the_selected_file(
    cast: Cast, as_type: Callable[[Path], str | bytes | os.PathLike[str]]
) -> None:
    entry = entry_for(cast.alice, b"data/big.bin")
    before = snapshot(cast.base)

    removal = remove_entry(as_type(cast.alice), entry)

    assert removal == Removal(entry=entry, removed=True, reason="")
    assert_only_removed(before, snapshot(cast.base), {b"home/alice/data/big.bin"})


def _grow(path: Path) -> None:
    mtime_ns = path.stat().st_mtime_ns
    with path.open("ab") as file:
        file.write(b"more")
    os.utime(path, ns=(mtime_ns, mtime_ns))  # only the size differs


def _touch(path: Path) -> None:
    mtime_ns = path.stat().st_mtime_ns
    os.utime(path, ns=(mtime_ns, mtime_ns + 1))


def _replace(path: Path) -> None:
    # Same content and times under a new inode (created before the old one is freed, so its
    # number cannot be reused).
    new = path.with_name(path.name + ".new")
    new.write_bytes(path.read_bytes())
    mtime_ns = path.stat().st_mtime_ns
    os.utime(new, ns=(mtime_ns, mtime_ns))
    new.replace(path)


@pytest.mark.parametrize(
    ("mutate", "differs_in"),
    [(_grow, "size"), (_touch, "mtime_ns"), (_replace, "ino")],
    ids=["size", "mtime", "inode"],
)
def test_a_file_changed_after_the_scan_is_skipped(
    cast: Cast, mutate: Callable[[Path], None], differs_in: str
) -> None:
    entry = entry_for(cast.alice, b"data/big.bin")
    mutate(cast.alice / "data/big.bin")
    now = entry_for(cast.alice, b"data/big.bin")
    differences = {
        field.name
        for field in dataclasses.fields(FileEntry)
        if getattr(now, field.name) != getattr(entry, field.name)
    }
    assert differences - {"blocks_bytes"} == {differs_in}
    before = snapshot(cast.base)

    removal = remove_entry(cast.alice, entry)

    assert (removal.removed, removal.reason) == (False, CHANGED)
    assert snapshot(cast.base) == before


def test_a_file_from_another_device_is_skipped(cast: Cast) -> None:
    entry = dataclasses.replace(entry_for(cast.alice, b"data/big.bin"), dev=123456789)

    removal = remove_entry(cast.alice, entry)

    assert (removal.removed, removal.reason) == (False, CHANGED)
    assert (cast.alice / "data/big.bin").exists()


@pytest.mark.parametrize(
    ("folder", "victim", "name"),
    [
        ("data", "home/bob/data", "big.bin"),
        ("cfg", "etc", "shadow"),
        ("deep/a", "home/bob/projects", "b/c/file.txt"),
    ],
    ids=["to-another-users-tree", "to-an-etc-copy", "middle-of-the-path"],
)
def test_a_folder_swapped_for_a_symlink_stops_the_removal(
    cast: Cast, folder: str, victim: str, name: str
) -> None:
    # Given Alice's file is another name of the victim's (same device, inode, size, mtime),
    # so only the path check stands between the cleanup and the victim's file,
    target = cast.alice / folder / name
    write(target, b"placeholder")
    hard_link_over(target, cast.base / victim / name)
    entry = entry_for(cast.alice, f"{folder}/{name}".encode())
    # and after the scan she swaps the folder for a symlink to the victim's folder.
    swap_for_symlink(cast.alice / folder, cast.base / victim)
    assert os.path.samestat(os.stat(target), os.stat(cast.base / victim / name))
    before = snapshot(cast.base)

    removal = remove_entry(cast.alice, entry)

    assert (removal.removed, removal.reason) == (False, SYMLINK_IN_PATH)
    assert snapshot(cast.base) == before


def test_a_folder_moved_out_of_the_tree_and_linked_back_is_not_followed(cast: Cast) -> None:
    entry = entry_for(cast.alice, b"data/big.bin")
    elsewhere = cast.base / "elsewhere"
    (cast.alice / "data").rename(elsewhere)
    (cast.alice / "data").symlink_to(elsewhere)
    before = snapshot(cast.base)

    removal = remove_entry(cast.alice, entry)

    assert (removal.removed, removal.reason) == (False, SYMLINK_IN_PATH)
    assert snapshot(cast.base) == before


@pytest.mark.parametrize("victim", ["home/bob/data/big.bin", "etc/shadow"])
def test_the_file_swapped_for_a_symlink_is_left_with_its_target(cast: Cast, victim: str) -> None:
    entry = entry_for(cast.alice, b"data/big.bin")
    (cast.alice / "data/big.bin").unlink()
    (cast.alice / "data/big.bin").symlink_to(cast.base / victim)
    before = snapshot(cast.base)

    removal = remove_entry(cast.alice, entry)

    assert (removal.removed, removal.reason) == (False, NOT_REGULAR)
    assert snapshot(cast.base) == before


def test_the_file_swapped_for_a_hard_link_to_another_users_file_is_left(cast: Cast) -> None:
    entry = entry_for(cast.alice, b"data/big.bin")
    hard_link_over(cast.alice / "data/big.bin", cast.bob / "data/big.bin")
    before = snapshot(cast.base)

    removal = remove_entry(cast.alice, entry)

    assert (removal.removed, removal.reason) == (False, CHANGED)
    assert snapshot(cast.base) == before


def test_a_root_that_is_a_symlink_removes_nothing(cast: Cast) -> None:
    # A scan ran over Bob's home; by removal time the root is a symlink (to that same home).
    root = cast.base / "home/carol"
    root.symlink_to(cast.bob)
    entries = [entry_for(cast.bob, b"data/big.bin"), entry_for(cast.bob, b"thesis.tex")]
    before = snapshot(cast.base)

    removals = list(remove_entries(root, entries))

    assert [(r.removed, r.reason) for r in removals] == [(False, SYMLINK_IN_PATH)] * 2
    assert remove_entry(root, entries[0]).reason == SYMLINK_IN_PATH
    assert snapshot(cast.base) == before


def test_removing_one_name_of_a_hard_linked_file_leaves_the_others(cast: Cast) -> None:
    # Removal unlinks a name; the data stays while another name (in the tree or outside) does.
    os.link(cast.alice / "data/big.bin", cast.alice / "big-twin.bin")
    os.link(cast.alice / "data/big.bin", cast.bob / "borrowed.bin")
    entry = entry_for(cast.alice, b"data/big.bin")
    before = snapshot(cast.base)

    removal = remove_entry(cast.alice, entry)

    assert removal.removed
    after = snapshot(cast.base)
    assert_only_removed(before, after, {b"home/alice/data/big.bin"})
    assert after[b"home/alice/big-twin.bin"].content == b"A" * 5000
    assert after[b"home/bob/borrowed.bin"].nlink == 2


def test_names_that_are_not_utf8(cast: Cast) -> None:
    root = os.fsencode(cast.alice)
    folder = os.path.join(root, b"\xff\xfe folder")
    os.mkdir(folder)
    for name in (b"caf\xe9 \n\x01.txt", b"caf\xc3\xa9 \n\x01.txt", b"\x80"):
        with open(os.path.join(folder, name), "wb") as file:
            file.write(name)
    entry = entry_for(root, b"\xff\xfe folder/caf\xe9 \n\x01.txt")
    before = snapshot(cast.base)

    removal = remove_entry(root, entry)

    assert removal.removed
    assert_only_removed(
        before, snapshot(cast.base), {b"home/alice/\xff\xfe folder/caf\xe9 \n\x01.txt"}
    )


def test_a_dry_run_changes_nothing_and_predicts_the_real_run(cast: Cast) -> None:
    write(cast.alice / "gone.txt", b"soon gone")
    entries = [
        entry_for(cast.alice, b"notes.txt"),  # would be removed
        entry_for(cast.alice, b"data/big.bin"),  # its folder becomes a symlink
        entry_for(cast.alice, b"deep/a/b/c/file.txt"),  # would be removed
        entry_for(cast.alice, b"gone.txt"),  # vanishes
        entry_for(cast.alice, b"deep"),  # a folder
    ]
    (cast.alice / "gone.txt").unlink()
    swap_for_symlink(cast.alice / "data", cast.bob / "data")
    before = snapshot(cast.base)

    dry = list(remove_entries(cast.alice, entries, dry_run=True))

    assert snapshot(cast.base) == before  # names, inodes, times (ctime too), link counts
    assert [(r.removed, r.reason) for r in dry] == [
        (False, DRY_RUN),
        (False, SYMLINK_IN_PATH),
        (False, DRY_RUN),
        (False, VANISHED),
        (False, NOT_REGULAR),
    ]
    assert remove_entry(cast.alice, entries[0], dry_run=True).reason == DRY_RUN
    assert snapshot(cast.base) == before

    real = list(remove_entries(cast.alice, entries))

    assert [r.entry for r in real if r.removed] == [r.entry for r in dry if would_remove(r)]
    assert_only_removed(
        before, snapshot(cast.base), {b"home/alice/notes.txt", b"home/alice/deep/a/b/c/file.txt"}
    )


def test_vanished_files_folders_and_roots(cast: Cast) -> None:
    entries = [entry_for(cast.alice, b"notes.txt"), entry_for(cast.alice, b"deep/a/b/c/file.txt")]
    (cast.alice / "notes.txt").unlink()
    (cast.alice / "deep/a/b/c/file.txt").unlink()
    for folder in ("deep/a/b/c", "deep/a/b", "deep/a"):
        (cast.alice / folder).rmdir()
    before = snapshot(cast.base)

    assert [r.reason for r in remove_entries(cast.alice, entries)] == [VANISHED, VANISHED]
    assert remove_entry(cast.base / "home/nobody-here", entries[0]).reason == VANISHED
    assert snapshot(cast.base) == before


def test_a_folder_on_the_path_that_became_a_file_is_changed(cast: Cast) -> None:
    entry = entry_for(cast.alice, b"deep/a/b/c/file.txt")
    (cast.alice / "deep/a/b/c/file.txt").unlink()
    (cast.alice / "deep/a/b/c").rmdir()
    (cast.alice / "deep/a/b/c").write_bytes(b"now a file")
    before = snapshot(cast.base)

    assert remove_entry(cast.alice, entry).reason == CHANGED
    assert snapshot(cast.base) == before


def test_folders_are_never_removed(cast: Cast) -> None:
    # A folder given as an entry is refused; a folder emptied by removals stays.
    (cast.alice / "empty").mkdir()
    (cast.alice / "data/small.txt").unlink()
    entries = [entry_for(cast.alice, b"empty"), entry_for(cast.alice, b"data/big.bin")]
    before = snapshot(cast.base)

    removals = list(remove_entries(cast.alice, entries))

    assert [(r.removed, r.reason) for r in removals] == [(False, NOT_REGULAR), (True, "")]
    assert_only_removed(before, snapshot(cast.base), {b"home/alice/data/big.bin"})
    assert (cast.alice / "data").is_dir()


def test_a_name_that_became_a_folder_is_left(cast: Cast) -> None:
    entry = entry_for(cast.alice, b"notes.txt")
    (cast.alice / "notes.txt").unlink()
    (cast.alice / "notes.txt").mkdir()
    before = snapshot(cast.base)

    assert remove_entry(cast.alice, entry).reason == NOT_REGULAR
    assert snapshot(cast.base) == before


@pytest.mark.parametrize(
    "rel_path",
    [
        b"",
        b"ABSOLUTE",  # replaced by the victim's absolute path below
        b"../bob/thesis.tex",
        b"data/../../bob/thesis.tex",
        b"./notes.txt",
        b"data//small.txt",
        b"data/small.txt/",
        b"notes.txt\0",
    ],
)
def test_a_path_that_could_step_outside_is_rejected(cast: Cast, rel_path: bytes) -> None:
    # Each entry carries the real identity of a file the path would reach if joined naively.
    if rel_path == b"ABSOLUTE":
        rel_path = os.fsencode(cast.bob / "thesis.tex")
    reached = os.path.join(os.fsencode(cast.alice), rel_path.rstrip(b"\0/") or b"notes.txt")
    entry = dataclasses.replace(entry_for(cast.alice, reached), rel_path=rel_path)
    before = snapshot(cast.base)

    removal = remove_entry(cast.alice, entry)

    assert (removal.removed, removal.reason) == (False, BAD_PATH)
    assert snapshot(cast.base) == before


def _remove_in_child(root: Path, entries: list[FileEntry]) -> list[tuple[bool, str]]:
    """``remove_entries(root, entries)`` in a forked child that, if we are root, runs as nobody."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        status = 1
        try:
            os.close(read_end)
            # Enter the root while still privileged: nobody cannot traverse pytest's 0700
            # temporary folders above it, and does not need to.
            os.chdir(root)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            results = [[r.removed, r.reason] for r in remove_entries(".", entries)]
            os.write(write_end, json.dumps(results).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    return [(removed, reason) for removed, reason in json.loads(output)]


def test_permission_errors_are_reported_not_raised(cast: Cast) -> None:
    # For real: the removal runs in a child process without privileges (uid 65534 when the
    # tests run as root, as here), over a tree where it may remove one file and not two.
    write(cast.alice / "mine.txt", b"removable")
    write(cast.alice / "locked/file.txt", b"folder not writable")
    write(cast.alice / "private/file.txt", b"folder not enterable")
    if os.geteuid() == 0:
        os.chown(cast.alice, NOBODY, NOBODY)
        os.chown(cast.alice / "mine.txt", NOBODY, NOBODY)
    entries = [entry_for(cast.alice, n) for n in (b"locked/file.txt", b"private/file.txt")]
    entries.append(entry_for(cast.alice, b"mine.txt"))
    (cast.alice / "locked").chmod(0o555)
    (cast.alice / "private").chmod(0o000)
    try:
        before = snapshot(cast.base)

        results = _remove_in_child(cast.alice, entries)
    finally:
        (cast.alice / "locked").chmod(0o755)
        (cast.alice / "private").chmod(0o755)

    assert results == [
        (False, "error: Permission denied"),
        (False, "error: Permission denied"),
        (True, ""),
    ]
    after = snapshot(cast.base)
    for path in (b"home/alice/locked", b"home/alice/private"):  # only the modes we restored
        after[path] = dataclasses.replace(
            after[path], mode=before[path].mode, ctime_ns=before[path].ctime_ns
        )
    assert_only_removed(before, after, {b"home/alice/mine.txt"})


def test_stops_after_the_removal_that_satisfies_the_caller(cast: Cast) -> None:
    names = [b"notes.txt", b"data/big.bin", b"data/small.txt"]
    taken: list[bytes] = []

    def candidates() -> Iterator[FileEntry]:
        for name in names:
            taken.append(name)
            yield entry_for(cast.alice, name)

    freed = 0

    def under_low_water(removal: Removal) -> bool:
        nonlocal freed
        freed += removal.entry.blocks_bytes if removal.removed else 0
        return freed >= 5000

    removals = list(remove_entries(cast.alice, candidates(), stop_when=under_low_water))

    assert [r.entry.rel_path for r in removals] == [b"notes.txt", b"data/big.bin"]
    assert taken == [b"notes.txt", b"data/big.bin"]  # the third candidate was never asked for
    assert (cast.alice / "data/small.txt").exists()


def test_a_tree_deeper_than_path_max(tmp_path: Path) -> None:
    # 30 folders of 200-byte names: the file's path is longer than PATH_MAX, so only a walk
    # from folder to folder can reach it.
    name, depth = b"d" * 200, 30
    fd = os.open(tmp_path, DIR_FLAGS)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        for leaf in (b"target", b"keep"):
            file_fd = os.open(leaf, os.O_WRONLY | os.O_CREAT, dir_fd=fd)
            os.write(file_fd, leaf)
            os.close(file_fd)
        st = os.stat(b"target", dir_fd=fd)
        rel_path = b"/".join([name] * depth + [b"target"])
        assert len(rel_path) > os.pathconf(tmp_path, "PC_PATH_MAX")
        entry = FileEntry(
            rel_path, st.st_size, st.st_blocks * 512, st.st_mtime_ns, st.st_dev, st.st_ino
        )

        removal = remove_entry(tmp_path, entry)

        assert removal.removed
        assert os.listdir(fd) == ["keep"]
    finally:
        os.close(fd)


def test_every_descriptor_is_closed_whatever_the_outcome(cast: Cast) -> None:
    entries = [
        entry_for(cast.alice, b"notes.txt"),
        entry_for(cast.alice, b"deep/a/b/c/file.txt"),
        entry_for(cast.alice, b"data/small.txt"),
        entry_for(cast.alice, b"data/big.bin"),
        dataclasses.replace(entry_for(cast.alice, b"deep/a/b/c/file.txt"), rel_path=b"../x"),
        entry_for(cast.alice, b"deep/a/b"),
    ]
    (cast.alice / "deep/a/b/c/file.txt").write_bytes(b"changed")
    swap_for_symlink(cast.alice / "data", cast.bob / "data")
    assert fds_into(cast.base) == set()

    removals = list(remove_entries(cast.alice, entries))
    abandoned = remove_entries(cast.alice, entries[1:])
    next(abandoned)
    abandoned.close()
    remove_entry(cast.base / "home/nobody-here", entries[0])

    assert [r.reason for r in removals] == [
        "",
        CHANGED,
        SYMLINK_IN_PATH,
        SYMLINK_IN_PATH,
        BAD_PATH,
        NOT_REGULAR,
    ]
    assert fds_into(cast.base) == set()


@pytest.mark.parametrize("swap_in", ["hard-link", "symlink"])
def test_a_name_swapped_between_check_and_unlink_loses_only_that_name(
    cast: Cast, monkeypatch: pytest.MonkeyPatch, swap_in: str
) -> None:
    # The one window no check closes (see fs_remove's docstring) is two system calls wide and
    # cannot be hit reliably for real, so the user's winning move is made from inside the final
    # lstat: the scanned file is moved aside and another name put in its place.
    entry = entry_for(cast.alice, b"data/big.bin")
    victim = cast.bob / "data/big.bin" if swap_in == "hard-link" else cast.etc / "shadow"
    victim_content = victim.read_bytes()
    real_stat = os.stat

    def stat_then_swap(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        result = real_stat(path, *args, **kwargs)
        if path == b"big.bin" and kwargs.get("dir_fd") is not None:
            moved = cast.alice / "data/big.bin"
            moved.rename(cast.alice / "data/big.bin.kept")
            if swap_in == "hard-link":
                os.link(victim, moved)
            else:
                moved.symlink_to(victim)
        return result

    with monkeypatch.context() as patch:
        patch.setattr(os, "stat", stat_then_swap)
        removal = remove_entry(cast.alice, entry)

    # The swapped-in name is what went (so the record overstates: the scanned inode survives
    # under the user's new name), but the victim's file is whole and in place.
    assert removal.removed
    assert not os.path.lexists(cast.alice / "data/big.bin")
    assert (cast.alice / "data/big.bin.kept").read_bytes() == b"A" * 5000
    assert victim.read_bytes() == victim_content
    assert victim.stat().st_nlink == 1
