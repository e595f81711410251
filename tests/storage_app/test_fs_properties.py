"""Properties of removal over generated trees: exactly the selected files go, nothing else.

Hypothesis builds a tree (nested folders, files of random sizes and modification times, hard
links inside the tree and to files outside it, symlinks to files and folders inside and
outside, FIFOs, names that are not UTF-8) beside an "outside" tree standing in for other users'
homes and ``/etc``, picks files to remove, sometimes tampers with them afterwards, and compares
snapshots of both trees before and after. Every example gets a fresh folder of its own.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from storage_app.fs_remove import DRY_RUN, NOT_REGULAR, remove_entries
from storage_app.fs_scan import scan_tree
from storage_app.fs_types import FileEntry, Removal
from tests.storage_app.test_fs_remove import assert_only_removed, entry_for, snapshot

PROPERTY = settings(
    max_examples=100,  # an example takes a few milliseconds: the four run in a few seconds
    deadline=None,
    database=None,  # no .hypothesis/ folder in the working tree; failures print their example
    # tmp_path is only the parent: each example works in a fresh folder of its own.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

ODD_NAMES = [
    b"\xff",
    b"caf\xe9",
    b"caf\xc3\xa9",
    b" ",
    b"-rf",
    b"a\nb",
    b"...",
    b"\x01",
    b"n" * 100,
]
NAMES = st.one_of(
    st.sampled_from(ODD_NAMES),
    st.binary(min_size=1, max_size=8)
    .map(lambda name: name.replace(b"/", b"\xaf").replace(b"\0", b"\x80"))
    .filter(lambda name: name not in (b".", b"..")),
)
# From 1938 to 2096, to the nanosecond (ext4 and tmpfs keep both ends).
MTIMES_NS = st.integers(-(10**18), 4 * 10**18)
KINDS = [
    "dir",
    "dir",
    "dir",
    "file",
    "file",
    "file",
    "file",
    "hard_link",
    "hard_link_outside",
    "symlink_inside",
    "symlink_outside",
    "fifo",
]
OUTSIDE_FILES = {
    b"etc/passwd": b"root:x:0:0:root:/root:/bin/bash\n",
    b"etc/shadow": b"root:$6$not-a-real-hash:19000:0:99999:7:::\n",
    b"bob/data/big.bin": b"B" * 9000,
    b"bob/data/sub/notes.txt": b"bob's notes",
}
OUTSIDE_DIRS = [b"", b"etc", b"bob", b"bob/data"]


@dataclasses.dataclass(frozen=True)
class Op:
    """Create one name: ``kind`` in the ``parent``-th folder so far, pointing at ``target``."""

    kind: str
    parent: int
    name: bytes
    size: int
    mtime_ns: int
    target: int


OPS = st.lists(
    st.builds(
        Op,
        kind=st.sampled_from(KINDS),
        parent=st.integers(0, 1000),
        name=NAMES,
        size=st.integers(0, 20_000),
        mtime_ns=MTIMES_NS,
        target=st.integers(0, 1000),
    ),
    min_size=5,
    max_size=40,
)
MUTATIONS = [
    "grow",
    "touch",
    "replace",
    "delete",
    "symlink_outside",
    "hard_link_outside",
    "folder",
    "fifo",
    "folder_moved_out",  # a folder on the path moved outside, a symlink left in its place
    "folder_mirrored",  # ... swapped for a symlink to an outside copy holding the same inode
]


@dataclasses.dataclass
class Tree:
    base: bytes
    root: bytes  # base/home: the tree a cleanup works in
    outside: bytes  # base/outside: what must never be touched
    files: list[bytes]  # regular files under root, relative to it
    others: list[bytes]  # folders, symlinks and FIFOs under root


@contextmanager
def fresh_folder(parent: Path) -> Iterator[bytes]:
    folder = os.fsencode(tempfile.mkdtemp(dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def build(base: bytes, ops: list[Op]) -> Tree:
    root, outside = os.path.join(base, b"home"), os.path.join(base, b"outside")
    os.mkdir(root)
    for rel, content in OUTSIDE_FILES.items():
        os.makedirs(os.path.dirname(os.path.join(outside, rel)), exist_ok=True)
        with open(os.path.join(outside, rel), "wb") as file:
            file.write(content)
    outside_files = [os.path.join(outside, rel) for rel in OUTSIDE_FILES]
    outside_dirs = [os.path.join(outside, rel) for rel in OUTSIDE_DIRS]
    tree = Tree(base, root, outside, files=[], others=[])
    dirs = [b""]
    for number, op in enumerate(ops):
        rel = os.path.join(dirs[op.parent % len(dirs)], op.name)
        if os.path.lexists(os.path.join(root, rel)):
            rel += b"~%d" % number
        path = os.path.join(root, rel)
        if op.kind == "dir":
            os.mkdir(path)
            dirs.append(rel)
            tree.others.append(rel)
        elif op.kind == "file":
            with open(path, "wb") as file:
                file.write((rel + b"|") * (op.size // (len(rel) + 1)))
            os.utime(path, ns=(op.mtime_ns, op.mtime_ns))
            tree.files.append(rel)
        elif op.kind in ("hard_link", "hard_link_outside"):
            if op.kind == "hard_link_outside":
                targets = outside_files
            else:
                targets = [os.path.join(root, name) for name in tree.files]
            if not targets:
                continue
            os.link(targets[op.target % len(targets)], path)
            tree.files.append(rel)
        elif op.kind in ("symlink_inside", "symlink_outside"):
            if op.kind == "symlink_outside":
                targets = outside_files + outside_dirs
            else:
                targets = [os.path.join(root, name) for name in tree.files + dirs]
            target = targets[op.target % len(targets)]
            if op.target % 2:  # relative or absolute, both never to be followed
                target = os.path.relpath(target, os.path.dirname(path))
            os.symlink(target, path)
            tree.others.append(rel)
        else:
            os.mkfifo(path)
            tree.others.append(rel)
    return tree


def still_selected(root: bytes, entry: FileEntry) -> bool:
    """The oracle: ``entry`` is reachable from ``root`` through real folders, and unchanged."""
    *folders, name = entry.rel_path.split(b"/")
    path = root
    for folder in folders:
        path = os.path.join(path, folder)
        if not os.path.isdir(path) or os.path.islink(path):
            return False
    try:
        st = os.lstat(os.path.join(path, name))
    except FileNotFoundError:
        return False
    identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    return stat.S_ISREG(st.st_mode) and identity == (
        entry.dev,
        entry.ino,
        entry.size,
        entry.mtime_ns,
    )


def aside(path: bytes) -> bytes:
    """A free name next to ``path``."""
    number = 0
    while os.path.lexists(path + b".aside%d" % number):
        number += 1
    return path + b".aside%d" % number


def mutate(tree: Tree, entry: FileEntry, how: str, level: int, serial: int) -> bool:
    """Tamper with a selected file (or a folder on its path) as its owner could after the scan.

    Returns False when ``how`` does not apply (a folder swap for a file directly in the root).
    """
    path = os.path.join(tree.root, entry.rel_path)
    # An outside file that is not the selected one (which may be a hard link to one of them).
    victim = next(
        path
        for path in (os.path.join(tree.outside, rel) for rel in OUTSIDE_FILES)
        if os.lstat(path).st_ino != entry.ino
    )
    folders = entry.rel_path.split(b"/")[:-1]
    if how in ("folder_moved_out", "folder_mirrored"):
        if not folders:
            return False
        depth = level % len(folders) + 1
        swapped = os.path.join(tree.root, *folders[:depth])
        beyond = b"/".join(entry.rel_path.split(b"/")[depth:])
        if how == "folder_moved_out":
            elsewhere = os.path.join(tree.outside, b"moved%d" % serial)
            os.rename(swapped, elsewhere)
        else:
            # The same inode under the same relative path outside: a walk that followed the
            # symlink would find a file identical in every field it checks.
            elsewhere = os.path.join(tree.outside, b"mirror%d" % serial)
            os.makedirs(os.path.dirname(os.path.join(elsewhere, beyond)))
            os.link(path, os.path.join(elsewhere, beyond))
            os.rename(swapped, aside(swapped))
        os.symlink(elsewhere, swapped)
        return True
    if how == "grow":
        with open(path, "ab") as file:
            file.write(b"+")
        os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))
    elif how == "touch":
        os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns + 1 + level))
    elif how == "replace":
        # A new inode (allocated while the old one lives) with the same size and times.
        new = aside(path)
        shutil.copyfile(path, new)
        os.utime(new, ns=(entry.mtime_ns, entry.mtime_ns))
        os.replace(new, path)
    else:
        os.unlink(path)
        if how == "symlink_outside":
            os.symlink(victim, path)
        elif how == "hard_link_outside":
            os.link(victim, path)
        elif how == "folder":
            os.mkdir(path)
        elif how == "fifo":
            os.mkfifo(path)
    return True


def select(tree: Tree, data: st.DataObject, *, tamper: bool) -> tuple[list[FileEntry], set[bytes]]:
    """Entries for some files (and a few non-files), in random order; and which were tampered."""
    chosen: list[bytes] = []
    if tree.files:
        chosen = data.draw(
            st.lists(st.sampled_from(tree.files), min_size=1, unique=True), label="chosen"
        )
    decoys: list[bytes] = []
    if tree.others:
        decoys = data.draw(
            st.lists(st.sampled_from(tree.others), unique=True, max_size=3), label="decoys"
        )
    order = data.draw(st.permutations(chosen + decoys), label="order")
    event(f"files in tree: {_bucket(len(tree.files))}, selected: {_bucket(len(chosen))}")
    entries = [entry_for(tree.root, rel) for rel in order]
    tampered: set[bytes] = set()
    if tamper:
        for serial, entry in enumerate(entries):
            if entry.rel_path not in chosen or not still_selected(tree.root, entry):
                continue
            how = data.draw(st.sampled_from([None, *MUTATIONS]), label=f"{entry.rel_path!r}")
            if how is None:
                continue
            level = data.draw(st.integers(0, 100), label="level")
            if mutate(tree, entry, how, level, serial):
                tampered.add(entry.rel_path)
                event(f"tampered: {how}")
    return entries, tampered


def _bucket(count: int) -> str:
    return "0" if count == 0 else "1-3" if count <= 3 else "4-9" if count <= 9 else "10+"


def home(paths: set[bytes]) -> set[bytes]:
    """Paths relative to the root as paths relative to the snapshot's base."""
    return {os.path.join(b"home", path) for path in paths}


@PROPERTY
@given(ops=OPS, data=st.data())
def test_exactly_the_selected_files_are_removed(
    tmp_path: Path, ops: list[Op], data: st.DataObject
) -> None:
    with fresh_folder(tmp_path) as base:
        tree = build(base, ops)
        entries, _ = select(tree, data, tamper=False)
        files = {entry.rel_path for entry in entries if entry.rel_path in tree.files}
        before = snapshot(base)

        removals = list(remove_entries(tree.root, entries))

        assert {r.entry.rel_path for r in removals if r.removed} == files
        assert all(r.reason == NOT_REGULAR for r in removals if r.entry.rel_path not in files)
        assert_only_removed(before, snapshot(base), home(files))


@PROPERTY
@given(ops=OPS, data=st.data())
def test_files_tampered_with_after_selection_are_not_removed(
    tmp_path: Path, ops: list[Op], data: st.DataObject
) -> None:
    with fresh_folder(tmp_path) as base:
        tree = build(base, ops)
        entries, tampered = select(tree, data, tamper=True)
        intact = {entry.rel_path for entry in entries if still_selected(tree.root, entry)}
        assert intact.isdisjoint(tampered)  # every tampering really invalidates (the oracle agrees)
        before = snapshot(base)

        removals = list(remove_entries(tree.root, entries))

        removed = {r.entry.rel_path for r in removals if r.removed}
        assert removed.isdisjoint(tampered)
        assert removed == intact
        assert_only_removed(before, snapshot(base), home(intact))


@PROPERTY
@given(ops=OPS, data=st.data(), tamper=st.booleans())
def test_a_dry_run_changes_nothing_and_names_what_a_real_run_removes(
    tmp_path: Path, ops: list[Op], data: st.DataObject, tamper: bool
) -> None:
    with fresh_folder(tmp_path) as base:
        tree = build(base, ops)
        entries, _ = select(tree, data, tamper=tamper)
        before = snapshot(base)

        dry = list(remove_entries(tree.root, entries, dry_run=True))

        assert snapshot(base) == before  # names, inodes, times including ctime, link counts
        assert not any(r.removed for r in dry)
        would = {r.entry.rel_path for r in dry if r.reason == DRY_RUN}
        assert would == {entry.rel_path for entry in entries if still_selected(tree.root, entry)}

        real = list(remove_entries(tree.root, entries))

        assert {r.entry.rel_path for r in real if r.removed} == would


def largest_first(root: bytes) -> list[FileEntry]:
    """The reference ranking: every regular file reached through real folders, in fs_scan's
    documented ``largest`` order (most allocated bytes, then least recently modified, then
    path)."""
    files = []
    for folder, _, names in os.walk(root):  # never follows a symlink to a folder
        for name in names:
            rel = os.path.relpath(os.path.join(folder, name), root)
            if stat.S_ISREG(os.lstat(os.path.join(root, rel)).st_mode):
                files.append(entry_for(root, rel))
    return sorted(files, key=lambda entry: (-entry.blocks_bytes, entry.mtime_ns, entry.rel_path))


@PROPERTY
@given(ops=OPS, data=st.data())
def test_a_scan_then_removal_frees_space_from_the_largest_files_only(
    tmp_path: Path, ops: list[Op], data: st.DataObject
) -> None:
    # No file here has two names in the tree: fs_scan offers such a file under whichever name
    # its threads meet first, which would make the expected set ambiguous. (Hard links to
    # outside files stay: one name inside, its partner outside must survive.)
    outside_targets: set[int] = set()
    unique_names = []
    for op in ops:
        if op.kind == "hard_link" or (
            op.kind == "hard_link_outside" and op.target % len(OUTSIDE_FILES) in outside_targets
        ):
            op = dataclasses.replace(op, kind="file")
        elif op.kind == "hard_link_outside":
            outside_targets.add(op.target % len(OUTSIDE_FILES))
        unique_names.append(op)
    with fresh_folder(tmp_path) as base:
        tree = build(base, unique_names)
        ranking = largest_first(tree.root)
        keep = data.draw(st.integers(1, len(ranking) + 2), label="keep")
        total = sum(entry.blocks_bytes for entry in ranking)
        to_free = data.draw(st.integers(1, total + 8192), label="to_free")
        expected: list[bytes] = []
        planned = 0
        for entry in ranking[:keep]:
            expected.append(entry.rel_path)
            planned += entry.blocks_bytes
            if planned >= to_free:
                break
        before = snapshot(base)

        scan = scan_tree(tree.root, keep=keep, order="largest")
        freed = 0

        def enough(removal: Removal) -> bool:
            nonlocal freed
            freed += removal.entry.blocks_bytes if removal.removed else 0
            return freed >= to_free

        removals = list(remove_entries(tree.root, scan.candidates, stop_when=enough))

        assert scan.candidates == ranking[:keep]
        assert [r.entry.rel_path for r in removals if r.removed] == expected
        assert all(r.removed for r in removals)
        assert_only_removed(before, snapshot(base), home(set(expected)))
