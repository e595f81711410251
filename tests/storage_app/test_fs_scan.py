"""Scanning a tree: what ``du -s`` counts, the bounded candidates, and nothing outside the tree.

Every test builds a real tree in pytest's temporary folders and compares the scan with
``du -s -B1`` and/or :func:`reference`, a plain walk that stats everything and keeps every file.
Most run three ways (the ``lister`` fixture): the compiled lister in one thread and in two, and
the pure-Python twin it falls back to, which must give the same answers. What must change
mid-scan changes for real: through :func:`around_visits`, a hook between a folder's listing and
the opening of its subfolder, or another thread deleting files; unreadable folders are scanned
as ``nobody`` in a forked child, since permissions do not stop root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import random
import resource
import shutil
import socket
import stat
import subprocess
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storage_app import fs_scan
from storage_app.fs_scan import scan_tree
from storage_app.fs_types import FileEntry, ScanResult
from tests.storage_app.descriptors import fds_into

NOBODY = 65534
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
DAY_NS = 86_400 * 10**9


@pytest.fixture(params=["native, 1 thread", "native, 2 threads", "python"])
def lister(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> functools.partial[ScanResult]:
    """``scan_tree`` with one of the listers (the native ones skip if it is not built: the
    ``test_native_helper_is_built`` test is the one that fails then)."""
    if request.param == "python":
        monkeypatch.setattr(fs_scan, "_native", None)
        return functools.partial(scan_tree, threads=1)
    if not fs_scan.native_helper():
        pytest.skip("the compiled lister is not built (setup.py build_ext --inplace)")
    return functools.partial(scan_tree, threads=1 if request.param.endswith("1 thread") else 2)


# --- building trees and looking at them the plain way -----------------------------------------


def write(path: Path, size: int, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def reference(root: Path) -> tuple[ScanResult, list[FileEntry]]:
    """Every inode under ``root`` stat'ed once, symlinks not followed, other file systems not
    entered; and every regular file (a hard-linked one once, under its smallest path)."""
    root_st = os.lstat(root)
    result = ScanResult(bytes_used=root_st.st_blocks * 512, dirs=1)
    files: dict[tuple[int, int], FileEntry] = {}
    seen: set[tuple[int, int]] = set()
    root_fd = os.open(root, DIR_FLAGS)
    stack = [(root_fd, b"")]
    while stack:
        fd, rel = stack.pop()
        for name in sorted(os.listdir(fd)):
            bname = os.fsencode(name)
            path = rel + b"/" + bname if rel else bname
            st = os.stat(bname, dir_fd=fd, follow_symlinks=False)
            if st.st_dev != root_st.st_dev:
                continue
            if stat.S_ISDIR(st.st_mode):
                result.dirs += 1
                result.bytes_used += st.st_blocks * 512
                stack.append((os.open(bname, DIR_FLAGS, dir_fd=fd), path))
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                if stat.S_ISREG(st.st_mode) and path < files[key].rel_path:
                    files[key] = dataclasses.replace(files[key], rel_path=path)
                continue
            seen.add(key)
            result.bytes_used += st.st_blocks * 512
            if stat.S_ISREG(st.st_mode):
                result.files += 1
                files[key] = FileEntry(
                    path, st.st_size, st.st_blocks * 512, st.st_mtime_ns, st.st_dev, st.st_ino
                )
        os.close(fd)
    return result, list(files.values())


def du(root: Path, *options: str) -> int:
    out = subprocess.run(["du", "-s", "-B1", *options, str(root)], capture_output=True, check=True)
    return int(out.stdout.split()[0])


def largest_first(entry: FileEntry) -> tuple[Any, ...]:
    return (-entry.blocks_bytes, entry.mtime_ns, entry.rel_path)


def oldest_first(entry: FileEntry) -> tuple[Any, ...]:
    return (entry.mtime_ns, -entry.blocks_bytes, entry.rel_path)


def totals(result: ScanResult) -> tuple[int, int, int, int]:
    return result.bytes_used, result.files, result.dirs, result.errors


def around_visits(
    monkeypatch: pytest.MonkeyPatch,
    before: Callable[[int, bytes], None] = lambda parent_fd, name: None,
    after: Callable[[int, bytes], None] = lambda parent_fd, name: None,
) -> None:
    """The test hook: run ``before``/``after`` around each visit of a folder (opening it
    relative to its parent's descriptor, then listing it), in whichever lister is in use. What
    they change on disk, the real system calls then meet."""
    for attr in ("_native", "_python"):
        listers = getattr(fs_scan, attr)
        if listers is None:
            continue

        def visit(parent_fd: int, name: bytes, *args: Any, real: Any = listers.visit) -> Any:
            before(parent_fd, name)
            visited = real(parent_fd, name, *args)
            after(parent_fd, name)
            return visited

        monkeypatch.setattr(fs_scan, attr, listers._replace(visit=visit))


def count_reopens(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Calls of the walk's reopening of a closed folder (one item each)."""
    calls: list[int] = []
    real = fs_scan._Worker.reopen

    def reopen(self: Any, folder: Any) -> int | None:
        calls.append(1)
        return real(self, folder)

    monkeypatch.setattr(fs_scan._Worker, "reopen", reopen)
    return calls


@contextlib.contextmanager
def descriptors_limited_to(more: int) -> Iterator[None]:
    """Only ``more`` descriptors beyond those open now (numbers from the lowest free one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = [int(fd) for fd in os.listdir("/proc/self/fd")]
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(in_use) + 1 + more, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def mixed_tree(tmp_path: Path) -> Path:
    """Nested folders, mixed sizes (empty, small, several blocks, sparse), an empty folder,
    a FIFO, a socket, hard links and symlinks."""
    root = tmp_path / "alice"
    rng = random.Random(7)
    for i in range(300):
        depth = rng.randint(0, 4)
        folder = root.joinpath(*[f"d{rng.randint(0, 3)}" for _ in range(depth)])
        write(folder / f"f{i}.bin", rng.choice([0, 1, 100, 4096, 5000, 70_000, 300_000]))
    (root / "empty" / "deeper").mkdir(parents=True)
    with open(root / "sparse.img", "wb") as sparse:
        sparse.truncate(50 * 2**20)
    os.mkfifo(root / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
    write(root / "linked" / "a", 200_000)
    os.link(root / "linked" / "a", root / "d1" / "a-again")
    os.link(root / "linked" / "a", root / "a-third")
    os.symlink("linked/a", root / "symlink-to-file")
    os.symlink("d1", root / "symlink-to-dir")
    os.symlink("/nonexistent", root / "dangling")
    return root


# --- the compiled helper ----------------------------------------------------------------------


def test_native_helper_is_built() -> None:
    # Without it scans run in one thread and are slower than du: `make` builds it.
    assert fs_scan.native_helper()


# --- totals -----------------------------------------------------------------------------------


def test_totals_equal_du_and_a_plain_walk(mixed_tree: Path, lister: Callable[..., Any]) -> None:
    expected, files = reference(mixed_tree)

    result = lister(mixed_tree)

    assert totals(result) == totals(expected)
    assert result.bytes_used == du(mixed_tree)
    assert result.files == len(files) == 300 + 2  # the sparse file, the hard-linked one
    assert result.candidates == [] and result.future_mtimes == []


def test_root_that_is_a_symlink_a_file_or_missing_gives_one_error(
    mixed_tree: Path, lister: Callable[..., Any], tmp_path: Path
) -> None:
    os.symlink(mixed_tree, tmp_path / "link-to-alice")

    for root in (tmp_path / "link-to-alice", mixed_tree / "linked" / "a", tmp_path / "nothing"):
        assert lister(root, keep=10) == ScanResult(errors=1)


def test_root_given_as_bytes_or_str(mixed_tree: Path, lister: Callable[..., Any]) -> None:
    by_path = lister(mixed_tree, keep=5)

    assert lister(os.fsencode(mixed_tree), keep=5) == by_path == lister(str(mixed_tree), keep=5)


def test_empty_root(tmp_path: Path, lister: Callable[..., Any]) -> None:
    result = lister(tmp_path, keep=3)

    assert totals(result) == (du(tmp_path), 0, 1, 0)


# --- hard links, symlinks, other file systems --------------------------------------------------


def test_hard_linked_file_counted_once_and_listed_once(
    tmp_path: Path, lister: Callable[..., Any]
) -> None:
    big = write(tmp_path / "a" / "big", 1_000_000)
    for i in range(5):
        (tmp_path / f"b{i}").mkdir()
        os.link(big, tmp_path / f"b{i}" / "same-big")
    write(tmp_path / "small", 10_000)

    result = lister(tmp_path, keep=10)

    assert result.files == 2
    assert result.bytes_used == du(tmp_path) == reference(tmp_path)[0].bytes_used
    assert [entry.size for entry in result.candidates] == [1_000_000, 10_000]
    assert result.candidates[0].ino == os.stat(big).st_ino


def test_symlinks_are_never_followed_nor_candidates(
    tmp_path: Path, lister: Callable[..., Any]
) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    write(alice / "notes.txt", 5_000)
    write(bob / "secret" / "huge.bin", 3_000_000)
    write(bob / "old.bin", 10, mtime_ns=1)
    os.symlink(bob, alice / "to-bob")
    os.symlink(bob / "secret" / "huge.bin", alice / "to-bobs-file")
    os.symlink("/etc", alice / "to-etc")
    os.symlink("/etc/passwd", alice / "passwd")
    os.symlink("notes.txt", alice / "to-own-file")
    os.symlink(".", alice / "loop")

    for order in ("largest", "oldest"):
        result = lister(alice, keep=100, order=order, now_ns=0, future_slack_ns=0)

        assert [entry.rel_path for entry in result.candidates] == [b"notes.txt"]
        assert [entry.rel_path for entry in result.future_mtimes] == [b"notes.txt"]
        assert totals(result) == (du(alice), 1, 1, 0)


def test_mount_point_inside_the_tree_is_not_entered(
    tmp_path: Path, lister: Callable[..., Any]
) -> None:
    write(tmp_path / "mine", 8192)
    mount = tmp_path / "mnt"
    mount.mkdir()
    try:
        command = ["mount", "-t", "tmpfs", "-o", "size=8m", "scan-test", str(mount)]
        subprocess.run(command, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        write(mount / "elsewhere" / "big", 2_000_000)

        result = lister(tmp_path, keep=10)

        assert [entry.rel_path for entry in result.candidates] == [b"mine"]
        assert (result.files, result.dirs) == (1, 1)
        assert result.bytes_used == du(tmp_path, "-x")
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# --- names and shapes -------------------------------------------------------------------------


def test_names_that_are_not_utf8(tmp_path: Path, lister: Callable[..., Any]) -> None:
    root = os.fsencode(tmp_path)
    os.mkdir(root + b"/caf\xe9")
    for name, size in ((b"caf\xe9/\xff\xfe.bin", 9000), (b"ok\x80", 5000), (b"\xc3(", 1)):
        with open(root + b"/" + name, "wb") as file:
            file.write(b"y" * size)

    result = lister(tmp_path, keep=10)

    assert [entry.rel_path for entry in result.candidates] == [
        b"caf\xe9/\xff\xfe.bin",
        b"ok\x80",
        b"\xc3(",
    ]
    assert totals(result) == (du(tmp_path), 3, 2, 0)


DEPTH = 5000


def make_deep(root: Path, comb: bool) -> None:
    """:data:`DEPTH` nested folders, a file in each. ``comb``: two more folders with a file
    each at every level, so that most levels still have a folder to visit while the walk is
    deeper down (names differ per level, so the listing order, a hash of the names on ext4,
    leaves one behind on about two levels in three). Paths get far longer than PATH_MAX."""
    fd = os.open(root, DIR_FLAGS)
    for level in range(DEPTH):
        file = os.open(b"f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(file, b"z" * (level + 1))
        os.close(file)
        for side in (f"s{level}", f"t{level}") if comb else ():
            os.mkdir(side, dir_fd=fd)
            side_fd = os.open(side, DIR_FLAGS, dir_fd=fd)
            os.close(os.open(b"g", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=side_fd))
            os.close(side_fd)
        os.mkdir(f"d{level}", dir_fd=fd)
        below = os.open(f"d{level}", DIR_FLAGS, dir_fd=fd)
        os.close(fd)
        fd = below
    os.close(fd)


@pytest.fixture(scope="module", params=[False, True], ids=["chain", "comb"])
def deep_tree(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, bool]]:
    root = tmp_path_factory.mktemp("deep")
    make_deep(root, request.param)
    yield root, request.param
    # shutil.rmtree recurses, and these paths cannot be used whole: rm unwinds them.
    subprocess.run(["rm", "-rf", "--", str(root)], check=True)


def test_very_deep_tree(
    deep_tree: tuple[Path, bool],
    lister: functools.partial[ScanResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, comb = deep_tree
    reopens = count_reopens(monkeypatch)
    assert fds_into(root) == set()

    # Descriptors: a bounded number per thread (an error would show in the totals).
    with descriptors_limited_to(2 * (fs_scan.OPEN_FOLDERS + 4)):
        result = lister(root, keep=3, order="oldest")

    dirs = 1 + DEPTH * (3 if comb else 1)
    assert totals(result) == totals(reference(root)[0])
    assert totals(result)[1:] == (DEPTH * (3 if comb else 1), dirs, 0)
    assert len(result.candidates) == 3
    assert fds_into(root) == set()  # all closed
    # In the comb, one thread closes folders on the way down and reopens them on the way back
    # (two threads may not: the idle one's requests for work empty the shallow folders first).
    if lister.keywords["threads"] == 1:
        assert bool(reopens) == comb


@pytest.mark.parametrize("open_folders", [1, 2])
def test_folders_closed_to_save_descriptors_are_reopened(
    mixed_tree: Path, lister: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, open_folders: int
) -> None:
    for i in range(200):
        write(mixed_tree / "wide" / f"w{i % 7}" / f"x{i % 5}" / f"f{i}", i * 100)
    expected, files = reference(mixed_tree)
    reopens = count_reopens(monkeypatch)
    monkeypatch.setattr(fs_scan, "OPEN_FOLDERS", open_folders)

    result = lister(mixed_tree, keep=50, order="oldest")

    assert totals(result) == totals(expected)
    assert [e.ino for e in result.candidates] == [
        e.ino for e in sorted(files, key=oldest_first)[:50]
    ]
    assert reopens


# --- errors: unreadable folders, things that vanish or change mid-scan ------------------------


def scan_as_nobody(root: Path, **kwargs: Any) -> dict[str, Any]:
    """Scan ``root`` in a forked child that has become ``nobody``, for whom permissions hold
    (they do not hold for root, whom the tests run as). ``root`` is entered before dropping
    root, so its ancestors (tmp_path is root's alone) need not be open to nobody."""
    read, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        status = 1
        try:
            os.close(read)
            os.chdir(root)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = scan_tree(".", **kwargs)
            candidates = [entry.rel_path.decode() for entry in result.candidates]
            answer = {"totals": totals(result), "candidates": candidates}
            os.write(write_end, json.dumps(answer).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read, "rb") as pipe:
        sent = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    received: dict[str, Any] = json.loads(sent)
    return received


@pytest.mark.parametrize("implementation", ["native", "python"])
def test_unreadable_folders_are_counted_as_errors_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, implementation: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to become nobody")
    if implementation == "python":
        monkeypatch.setattr(fs_scan, "_native", None)
    elif not fs_scan.native_helper():
        pytest.skip("the compiled lister is not built")
    root = tmp_path / "tree"
    write(root / "readable" / "big", 100_000)
    write(root / "closed" / "inside" / "bigger", 400_000)  # mode 000: not even listed
    write(root / "listable" / "a", 200_000)  # mode 444: listed, but nothing in it stat'ed
    write(root / "listable" / "b", 300_000)
    (root / "listable" / "sub").mkdir()
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    root.chmod(0o755)
    (root / "closed").chmod(0o000)
    (root / "listable").chmod(0o444)
    everything = du(root)
    hidden = sum(
        os.lstat(path).st_blocks * 512
        for path in [
            root / "closed" / "inside",
            root / "closed" / "inside" / "bigger",
            *(root / "listable" / name for name in ("a", "b", "sub")),
        ]
    )

    answer = scan_as_nobody(root, keep=5)

    # errors: "closed" cannot be opened; "a", "b" and "sub" in "listable" cannot be stat'ed.
    bytes_used, files, dirs, errors = answer["totals"]
    assert (files, dirs, errors) == (1, 4, 4)
    assert bytes_used == everything - hidden
    assert answer["candidates"] == ["readable/big"]


def test_folder_vanishing_before_it_is_opened(
    mixed_tree: Path, lister: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # "d2" is deleted after its parent was listed, just before the walk opens it: the open
    # then really fails (ENOENT).
    gone, root_st = mixed_tree / "d2", os.stat(mixed_tree)

    def remove(parent_fd: int, name: bytes) -> None:
        if name == b"d2" and os.path.samestat(os.fstat(parent_fd), root_st) and gone.exists():
            shutil.rmtree(gone)

    around_visits(monkeypatch, before=remove)
    result = lister(mixed_tree, keep=1000)

    expected, files = reference(mixed_tree)
    assert not gone.exists()
    assert totals(result) == (*totals(expected)[:3], 1)
    assert {entry.ino for entry in result.candidates} == {entry.ino for entry in files}


def test_folder_swapped_for_a_symlink_before_it_is_opened(
    tmp_path: Path, lister: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, etc = tmp_path / "alice", tmp_path / "etc"
    write(alice / "work" / "result.csv", 20_000)
    write(alice / "keep.txt", 4_000)
    write(etc / "shadow", 1_000_000)

    def swap(parent_fd: int, name: bytes) -> None:
        if name == b"work" and not (alice / "work").is_symlink():
            (alice / "work").rename(tmp_path / "work-moved-away")
            os.symlink("../etc", alice / "work")  # short: no block of its own

    around_visits(monkeypatch, before=swap)
    result = lister(alice, keep=10)

    assert (alice / "work").is_symlink()
    assert [entry.rel_path for entry in result.candidates] == [b"keep.txt"]
    assert totals(result) == (du(alice), 1, 1, 1)


@pytest.mark.parametrize("implementation", ["native", "python"])
def test_folder_replaced_while_its_descriptor_was_closed_is_not_reentered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, implementation: str
) -> None:
    # One descriptor per thread: "x" is closed as soon as its first subfolder (with a folder
    # of its own) is held, and that is when the hook moves "x" out of the tree and puts another
    # folder "x" with the same names in its place. The walk reopens "x" by name for the other
    # two subfolders, finds another inode, and skips them as errors instead of scanning the
    # newcomer.
    if implementation == "python":
        monkeypatch.setattr(fs_scan, "_native", None)
    elif not fs_scan.native_helper():
        pytest.skip("the compiled lister is not built")
    root = tmp_path / "root"
    for name in ("a", "b", "c"):
        write(root / "x" / name / "sub" / "mine", 5_000)
    x_ino = os.stat(root / "x").st_ino
    swapped = False

    def swap(parent_fd: int, name: bytes) -> None:
        nonlocal swapped
        if not swapped and os.fstat(parent_fd).st_ino == x_ino:
            swapped = True
            (root / "x").rename(tmp_path / "moved-out")
            for sub in ("a", "b", "c"):
                write(root / "x" / sub / "sub" / "newcomer", 900_000)

    around_visits(monkeypatch, after=swap)
    monkeypatch.setattr(fs_scan, "OPEN_FOLDERS", 1)
    result = scan_tree(root, keep=10, threads=1)

    assert swapped
    assert [entry.size for entry in result.candidates] == [5_000]
    assert (result.files, result.dirs, result.errors) == (1, 4, 2)


def test_files_vanishing_between_listing_and_stat(
    mixed_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hook (pure-Python lister only: the compiled one lists and stats in one C loop): each
    # directory entry's file is unlinked as the listing hands it over, so the lister's lstat
    # of it really fails. Folders are left, so the walk goes on.
    monkeypatch.setattr(fs_scan, "_native", None)
    real_scandir = os.scandir

    def scandir_removing(fd: Any) -> Any:
        listing = real_scandir(fd)

        class Removing:
            def __iter__(self) -> Iterator[os.DirEntry[str]]:
                for entry in listing:
                    if not entry.is_dir(follow_symlinks=False):
                        os.unlink(entry.name, dir_fd=fd)
                    yield entry

            def close(self) -> None:
                listing.close()

        return Removing()

    expected = reference(mixed_tree)[0]
    monkeypatch.setattr(os, "scandir", scandir_removing)
    result = scan_tree(mixed_tree, keep=10)
    monkeypatch.undo()

    names = 300 + 1 + 2 + 3 + 3  # files, the sparse one, FIFO and socket, hard links, symlinks
    assert (result.files, result.dirs, result.errors) == (0, expected.dirs, names)
    assert result.bytes_used == du(mixed_tree) and result.candidates == []


def test_files_vanishing_while_scanned(tmp_path: Path, lister: Callable[..., Any]) -> None:
    # The compiled lister under a real race: another thread deletes files while we scan.
    # Whatever the timing, nothing raises, no deleted file is counted twice, and every file is
    # either counted, reported as an error, or was gone before its folder was listed.
    import threading

    paths = [write(tmp_path / f"d{i % 20}" / f"f{i}", 5000) for i in range(4000)]
    stop = threading.Event()

    def delete() -> None:
        for path in paths[::2]:
            if stop.is_set():
                return
            path.unlink()

    deleter = threading.Thread(target=delete)
    deleter.start()
    try:
        result = lister(tmp_path, keep=5000)
    finally:
        stop.set()
        deleter.join()

    remaining = sum(1 for path in paths if path.exists())
    assert remaining <= result.files <= len(paths)
    assert result.files + result.errors <= len(paths)
    assert len(result.candidates) == result.files
    assert len({entry.ino for entry in result.candidates}) == result.files


# --- candidates: order, ties, bounds ----------------------------------------------------------


def test_largest_first_with_ties_broken_by_age(tmp_path: Path, lister: Callable[..., Any]) -> None:
    write(tmp_path / "big-new", 40_000, mtime_ns=5 * DAY_NS)
    write(tmp_path / "big-old", 40_000, mtime_ns=1 * DAY_NS)
    write(tmp_path / "sub" / "big-same-age", 40_000, mtime_ns=1 * DAY_NS)
    write(tmp_path / "medium", 20_000, mtime_ns=0)
    write(tmp_path / "small", 100, mtime_ns=0)
    write(tmp_path / "empty", 0, mtime_ns=0)

    result = lister(tmp_path, keep=4, order="largest")

    assert [entry.rel_path for entry in result.candidates] == [
        b"big-old",
        b"sub/big-same-age",
        b"big-new",
        b"medium",
    ]


def test_oldest_first_with_ties_broken_by_size(tmp_path: Path, lister: Callable[..., Any]) -> None:
    write(tmp_path / "new", 1_000_000, mtime_ns=9 * DAY_NS)
    write(tmp_path / "old-small", 100, mtime_ns=2 * DAY_NS)
    write(tmp_path / "old-big", 90_000, mtime_ns=2 * DAY_NS)
    write(tmp_path / "oldest", 1, mtime_ns=-DAY_NS)  # before 1970
    write(tmp_path / "a" / "old-big", 90_000, mtime_ns=2 * DAY_NS)

    result = lister(tmp_path, keep=4, order="oldest")

    assert [entry.rel_path for entry in result.candidates] == [
        b"oldest",
        b"a/old-big",
        b"old-big",
        b"old-small",
    ]
    oldest = result.candidates[0]
    st = os.stat(tmp_path / "oldest")
    assert oldest == FileEntry(b"oldest", 1, st.st_blocks * 512, -DAY_NS, st.st_dev, st.st_ino)


@pytest.mark.parametrize("order", ["largest", "oldest"])
@pytest.mark.parametrize("keep", [0, 1, 7, 250, 5000])
def test_candidates_are_the_first_in_cleanup_order(
    tmp_path: Path,
    lister: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    order: str,
    keep: int,
) -> None:
    # Many ties on size and age, folders of a few files and one of thousands (listed in several
    # batches, so the threshold handed to the lister tightens between them).
    monkeypatch.setattr(fs_scan, "BATCH", 64)
    rng = random.Random(keep)
    for i in range(3000):
        folder = tmp_path / "big-folder" if i % 2 else tmp_path / f"d{i % 40}" / f"e{i % 3}"
        size = rng.choice([0, 1, 4096, 4097, 8192, 30_000, 100_000])
        write(folder / f"file-{i}", size, mtime_ns=rng.randrange(5) * DAY_NS + rng.randrange(2))
    files = reference(tmp_path)[1]
    key = largest_first if order == "largest" else oldest_first

    result = lister(tmp_path, keep=keep, order=order)

    assert result.candidates == sorted(files, key=key)[:keep]
    assert result.files == 3000


def test_candidates_are_only_regular_files(mixed_tree: Path, lister: Callable[..., Any]) -> None:
    with contextlib.suppress(PermissionError):
        os.mknod(mixed_tree / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    files = reference(mixed_tree)[1]

    result = lister(mixed_tree, keep=10_000, order="oldest")

    assert sorted(result.candidates, key=oldest_first) == result.candidates
    assert {e.rel_path for e in result.candidates} == {e.rel_path for e in files}
    for entry in result.candidates:
        assert stat.S_ISREG(os.lstat(mixed_tree / os.fsdecode(entry.rel_path)).st_mode)


# --- future modification times ----------------------------------------------------------------


def test_future_mtimes_beyond_the_slack(tmp_path: Path, lister: Callable[..., Any]) -> None:
    now = 1_800_000_000 * 10**9
    write(tmp_path / "normal", 10, mtime_ns=now - DAY_NS)
    write(tmp_path / "within-slack", 10, mtime_ns=now + 60 * 10**9)
    write(tmp_path / "tomorrow", 10, mtime_ns=now + DAY_NS)
    write(tmp_path / "d" / "far", 10, mtime_ns=now + 3650 * DAY_NS)
    write(tmp_path / "d" / "next-week", 10, mtime_ns=now + 7 * DAY_NS)
    (tmp_path / "future-folder").mkdir()
    os.utime(tmp_path / "future-folder", ns=(now + DAY_NS, now + DAY_NS))
    os.symlink("normal", tmp_path / "future-link")
    os.utime(tmp_path / "future-link", ns=(now + DAY_NS, now + DAY_NS), follow_symlinks=False)
    hour = 3600 * 10**9

    found = lister(tmp_path, now_ns=now, future_slack_ns=hour)
    two = lister(tmp_path, now_ns=now, future_slack_ns=hour, keep_future=2, keep=1)

    assert [e.rel_path for e in found.future_mtimes] == [b"d/far", b"d/next-week", b"tomorrow"]
    assert [e.rel_path for e in two.future_mtimes] == [b"d/far", b"d/next-week"]
    assert [e.rel_path for e in two.candidates] == [b"normal"]  # all one block: the oldest
    assert lister(tmp_path, now_ns=now).future_mtimes == []
    assert lister(tmp_path, now_ns=now, future_slack_ns=hour, keep_future=0).future_mtimes == []


# --- memory -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_and_large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Folders of the same size and shape, once and five times over."""

    def build(root: Path, copies: int) -> Path:
        for i in range(copies * 2000):
            write(root / f"t{i // 2000}" / f"d{i // 100 % 20}" / f"f{i}", i * 7919 % 20_000)
        return root

    base = tmp_path_factory.mktemp("memory")
    return build(base / "small", 1), build(base / "large", 5)


def test_memory_does_not_grow_with_the_number_of_files(
    small_and_large: tuple[Path, Path], lister: Callable[..., Any]
) -> None:
    # The peak of Python allocations (the compiled lister's buffers are freed at each call).
    def peak(root: Path) -> int:
        tracemalloc.start()
        try:
            result = lister(root, keep=100, now_ns=0, future_slack_ns=DAY_NS)
            assert len(result.candidates) == 100
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = small_and_large
    peak(small)  # imports and caches warm

    # About 110 kB either way; the margin is what two threads' batches in flight at the same
    # moment can add on a busy machine. Anything kept per file (8,000 more files) would show:
    # even 8 bytes each would take 64 kB.
    assert peak(large) < peak(small) + 60_000
