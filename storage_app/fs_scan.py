"""Scan a tree: its usage, as ``du -s`` counts it, and the files a cleanup would remove first.

:func:`scan_tree` returns a :class:`~storage_app.fs_types.ScanResult`: allocated bytes, counts,
errors, the first ``keep`` regular files in cleanup order and (bounded) files with modification
times in the future.

Safety
    The scan runs with more rights than the user who owns the tree and can change it at any
    moment, so it never follows a symlink and never leaves the tree. Every folder is opened
    relative to its parent's file descriptor with ``O_DIRECTORY | O_NOFOLLOW``, and every entry
    is ``lstat``-ed relative to its folder's descriptor (``fstatat(..., AT_SYMLINK_NOFOLLOW)``):
    a folder swapped for a symlink between listing and opening fails to open and is counted in
    ``errors``, never entered. Folders on another file system (a mount point inside the tree,
    or a file bind-mounted into it) are neither entered nor counted: usage is that of the
    tree's own file system, like ``du -s -x``. Names are bytes, so they need not be UTF-8.
    Folders that cannot be read and entries that vanish mid-scan are counted in ``errors`` and
    skipped; nothing here raises for one file. The root path itself is trusted configuration:
    only its last component is opened with ``O_NOFOLLOW`` (a symlink or non-folder root gives a
    result with ``errors=1`` and nothing else).

What is counted
    ``bytes_used`` is the sum of ``st_blocks * 512`` over every inode in the tree, folders and
    symlinks included, each inode with several links once: what ``du -s -B1`` prints. ``files``
    counts regular files (a hard-linked one once), ``dirs`` folders, the root included. Only
    regular files are candidates or future-mtime files, each inode at most once (under the name
    the scan met first).

Memory
    Nothing grows with the number of files. The walk is depth-first and keeps the names of the
    folders still to visit (bounded by the tree's width times its depth, not by its files); the
    candidates are a heap of at most ``keep`` entries, the future-mtime files one of at most
    ``keep_future``; the set of inode numbers holds only files with several links. A
    folder is listed in batches of :data:`BATCH` entries, so one huge folder does not turn into
    one huge list either. Deep trees: the walk is a loop (no recursion), and each thread keeps
    at most :data:`OPEN_FOLDERS` folder descriptors open; a folder whose descriptor was closed
    is reopened from its nearest open ancestor, one ``O_NOFOLLOW`` component at a time, and
    must still be the same (device, inode) or it is skipped as an error.

Speed: why a small C helper and threads
    A warm-cache scan of a million files is system calls: ``du -s`` spends about 90 % of its
    1.9 s in the kernel (``getdents64``, then one ``fstatat`` per entry, which sizes and mtimes
    need anyway), so no single-threaded walk can be much faster; a plain ``os.scandir`` walk
    adds about 2 µs of Python per entry on top (twice du's time). The way past ``du`` is to
    make those system calls on both CPUs at once. Python threads alone get slower (the GIL is
    handed over at every system call: 3.9 s with two threads where one took 2.8 s), and worker
    processes would fork a threaded Celery worker and merge heaps and inode sets across
    processes. So opening a folder and listing it (``openat``, ``fstat``, ``getdents64`` and
    an ``fstatat`` per entry, summing sizes and passing on only the entries the heap could
    take) is one call of a small C extension, ``storage_app._fs_scan_native``, that runs with
    the GIL released: one GIL hand-over per folder. Everything else (the walk, reopening,
    hard links, the heaps, errors) is this module, and two threads share the walk (an idle
    thread gets the shallowest folder the other has not visited yet). Measured side by side
    on a million files: ×0.57 of du's time with two threads, ×0.97 in one (as when the other
    CPU is busy); the figures are in ``docs/benchmarks.md``, "Storage scan".

    The extension is built by ``python setup.py build_ext --inplace`` (``make`` runs it).
    Without it the same walk runs with :func:`_visit_py` and :func:`_list_batch_py`, its
    ``os.scandir`` twins (the tests run both on the same trees), in one thread: correct, and
    about twice du's time.

Length
    Past the ~500 lines of the other modules, on purpose: the walk, its two threads, the
    reopening of folders and the bounded heaps share one set of invariants (every folder visited
    once, from a descriptor that was checked, never following a link), which a split would
    spread over modules that only make sense together.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import heapq
import importlib
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from storage_app.fs_types import FileEntry, Order, ScanResult

__all__ = ["BATCH", "MAX_THREADS", "OPEN_FOLDERS", "default_threads", "native_helper", "scan_tree"]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Entries one call of the lister reads (the compiled one finishes the 64 kB it read from the
# kernel): what one call hands back at most, and how often the threshold it filters with is
# refreshed within a folder.
BATCH = 4096
# Folder descriptors one thread keeps open for folders with subfolders still to visit. Past
# that, the one opened longest ago is closed, and reopened when needed: a realistic tree never
# gets there; a 5,000-level comb with folders left to visit on most levels costs in the order
# of depth² / 2 / OPEN_FOLDERS extra opens (about 10^5: well under a second).
OPEN_FOLDERS = 64
MAX_THREADS = 4
_NS = 1_000_000_000

# What the listers return (``_fs_scan_native.c`` says what each item means). A batch:
# (subdirs, blocks, files, picks, errors, eof); a pick:
# (name, mode, size, blocks_bytes, mtime_sec, mtime_nsec, dev, ino, nlink); a visit:
# (status, fd, dev, ino, dir_blocks, *batch, source), source being what to read the folder's
# next batches from (the compiled lister's: the descriptor; its twin's: a scandir iterator).
Pick = tuple[bytes, int, int, int, int, int, int, int, int]
Batch = tuple[list[bytes], int, int, list[Pick], int, bool]


class _Listers(NamedTuple):
    visit: Callable[..., tuple[Any, ...]]
    batch: Callable[..., Batch]


def _load_native() -> _Listers | None:
    try:
        module = importlib.import_module("storage_app._fs_scan_native")
    except ImportError:
        return None
    return _Listers(module.visit, module.list_batch)


_native = _load_native()


def native_helper() -> bool:
    """Whether the compiled lister is built (else scans are single-threaded and slower)."""
    return _native is not None


def default_threads() -> int:
    """How many threads a scan uses unless told: the CPUs we may run on, at most
    :data:`MAX_THREADS`; 1 without the compiled lister, where more only fight for the GIL."""
    if _native is None:
        return 1
    return max(1, min(MAX_THREADS, len(os.sched_getaffinity(0))))


def _visit_py(
    parent_fd: int, name: bytes, close_parent: bool, root_dev: int, *filter_and_limit: Any
) -> tuple[Any, ...]:
    """The twin of the compiled ``visit``, listing with ``os.scandir``; its last item is the
    scandir iterator to read the next batches from (None once listed to the end)."""
    status, fd, dev, ino, dir_blocks = 0, -1, 0, 0, -1
    batch: Batch = ([], 0, 0, [], 0, True)
    entries = None
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as error:
        status = error.errno or errno.EIO
        if status == errno.EACCES:
            with contextlib.suppress(OSError):
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode) and st.st_dev == root_dev:
                    dir_blocks = st.st_blocks * 512
    else:
        try:
            st = os.fstat(fd)
        except OSError as error:
            status = error.errno or errno.EIO
        else:
            if st.st_dev != root_dev:
                status = -1
        if status:
            os.close(fd)
            fd = -1
        else:
            dev, ino, dir_blocks = st.st_dev, st.st_ino, st.st_blocks * 512
            entries = os.scandir(fd)
            batch = _list_batch_py(entries, root_dev, *filter_and_limit)
            if batch[5]:
                entries.close()
                entries = None
                if not batch[0]:
                    os.close(fd)
                    fd = -1
    if close_parent:
        os.close(parent_fd)
    return (status, fd, dev, ino, dir_blocks, *batch, entries)


def _list_batch_py(
    entries: Iterator[os.DirEntry[str]],
    root_dev: int,
    want: int,
    order: int,
    t_blocks: int,
    t_sec: int,
    t_nsec: int,
    future: bool,
    f_sec: int,
    f_nsec: int,
    limit: int,
) -> Batch:
    """The twin of the compiled ``list_batch``, reading from an ``os.scandir`` iterator of
    the folder instead of its descriptor."""
    subdirs: list[bytes] = []
    picks: list[Pick] = []
    blocks = files = errors = done = 0
    for entry in entries:
        name = os.fsencode(entry.name)
        done += 1
        try:
            # d_type when the file system gives it; otherwise an lstat through the folder.
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(name)
                continue
            st = entry.stat(follow_symlinks=False)
        except OSError:
            errors += 1  # vanished since the listing, or not ours to see
            continue
        if stat.S_ISDIR(st.st_mode):
            subdirs.append(name)
        elif st.st_dev != root_dev:
            pass
        elif st.st_nlink > 1:
            picks.append(_pick(name, st))
        else:
            blocks += st.st_blocks * 512
            if stat.S_ISREG(st.st_mode):
                files += 1
                if _picked(st, want, order, t_blocks, t_sec, t_nsec, future, f_sec, f_nsec):
                    picks.append(_pick(name, st))
        if done >= limit:
            return subdirs, blocks, files, picks, errors, False
    return subdirs, blocks, files, picks, errors, True


_python = _Listers(_visit_py, _list_batch_py)


def _pick(name: bytes, st: os.stat_result) -> Pick:
    sec, nsec = divmod(st.st_mtime_ns, _NS)
    return (
        name,
        st.st_mode,
        st.st_size,
        st.st_blocks * 512,
        sec,
        nsec,
        st.st_dev,
        st.st_ino,
        st.st_nlink,
    )


def _picked(
    st: os.stat_result,
    want: int,
    order: int,
    t_blocks: int,
    t_sec: int,
    t_nsec: int,
    future: bool,
    f_sec: int,
    f_nsec: int,
) -> bool:
    mtime, blocks = divmod(st.st_mtime_ns, _NS), st.st_blocks * 512
    if future and mtime > (f_sec, f_nsec):
        return True
    if want == 1:
        return True
    if want != 2:
        return False
    if order == 0:
        return (-blocks, *mtime) <= (-t_blocks, t_sec, t_nsec)
    return (*mtime, -blocks) <= (t_sec, t_nsec, -t_blocks)


@dataclass(eq=False, slots=True)
class _Dir:
    """A folder the walk entered. ``parent``, ``name``, ``rel``, ``dev`` and ``ino`` never
    change, so every thread may read them; ``fd`` and ``pending`` (its subfolders still to
    visit) belong to ``owner``, the one thread that uses them (the root has none: its
    descriptor stays open for the whole scan). ``fd`` is open while ``pending`` is not 0,
    unless it was closed to stay within :data:`OPEN_FOLDERS`."""

    parent: _Dir | None
    name: bytes
    rel: bytes
    dev: int
    ino: int
    fd: int | None
    owner: _Worker | None
    pending: int = 0


class _Worst:
    """A heap item that puts the worst key on top of :mod:`heapq`'s min-heap."""

    __slots__ = ("key", "entry")

    def __init__(self, key: tuple[Any, ...], entry: FileEntry) -> None:
        self.key, self.entry = key, entry

    def __lt__(self, other: _Worst) -> bool:
        return other.key < self.key


def _join(rel: bytes, name: bytes) -> bytes:
    return rel + b"/" + name if rel else name


def _key_of(item: _Worst) -> tuple[Any, ...]:
    return item.key


def _furthest(future: tuple[int, bytes, FileEntry]) -> tuple[int, bytes]:
    return -future[0], future[1]


class _Walk:
    """What the threads of one scan share: the folders handed over to idle threads, the
    heaps and the inode set (under ``lock``), and the root."""

    def __init__(
        self,
        root_fd: int,
        root_st: os.stat_result,
        keep: int,
        order: Order,
        future_after: int | None,
        keep_future: int,
        threads: int,
        listers: _Listers,
    ) -> None:
        self.root = _Dir(None, b"", b"", root_st.st_dev, root_st.st_ino, root_fd, None)
        self.keep, self.order, self.keep_future = keep, order, keep_future
        self.future_after = -1 if future_after is None else future_after
        self.future = future_after is not None and keep_future > 0
        self.f_sec, self.f_nsec = divmod(self.future_after, _NS) if self.future else (0, 0)
        self.threads, self.listers = threads, listers
        self.lock = threading.Lock()
        self.candidates: list[_Worst] = []
        self.futures: list[tuple[int, bytes, FileEntry]] = []
        # Inode numbers of files with several links (all on the root's device: others are
        # skipped), so that each is counted once.
        self.linked: set[int] = set()
        self.linked_bytes = self.linked_files = 0
        # What the listers pass on: (want, blocks, sec, nsec) of the heap's worst entry. Only
        # replaced whole, under the lock, so a thread reading it unlocked sees an old or a new
        # threshold, both safe: the heap only gets stricter.
        self.threshold = (1 if keep else 0, 0, 0, 0)
        # Folders visited (opened, counted, listed), with the names of their subfolders, for an
        # idle thread to go on with.
        self.handed: list[tuple[_Dir, list[bytes]]] = []
        self.idle = 0
        self.turn = threading.Condition(threading.Lock())
        self.failure: BaseException | None = None

    def run(self) -> ScanResult:
        workers = [_Worker(self) for _ in range(self.threads)]
        others = [threading.Thread(target=w.run, name="scan_tree") for w in workers[1:]]
        try:
            workers[0].push(self.root, workers[0].list_rest(self.root, self.root.fd))
            for thread in others:  # after the root's listing, so that they find work
                thread.start()
            workers[0].run()
        finally:
            for thread in others:
                if thread.ident is not None:
                    thread.join()
            for folder, _ in self.handed:  # left over after a failure
                if folder.fd is not None:
                    os.close(folder.fd)
        if self.failure is not None:
            raise self.failure
        result = ScanResult(
            bytes_used=self.linked_bytes + sum(w.bytes_used for w in workers),
            files=self.linked_files + sum(w.files for w in workers),
            dirs=sum(w.dirs for w in workers),
            errors=sum(w.errors for w in workers),
        )
        result.candidates = [item.entry for item in sorted(self.candidates, key=_key_of)]
        result.future_mtimes = [entry for *_, entry in sorted(self.futures, key=_furthest)]
        return result

    def take(self) -> tuple[_Dir, list[bytes]] | None:
        """A folder handed over by another thread; None once every thread is idle."""
        with self.turn:
            self.idle += 1
            while not self.handed and self.idle < self.threads and self.failure is None:
                self.turn.wait()
            if self.handed and self.failure is None:
                self.idle -= 1
                return self.handed.pop()
            self.turn.notify_all()
            return None

    def hand_over(self, folder: _Dir, subdirs: list[bytes]) -> None:
        with self.turn:
            self.handed.append((folder, subdirs))
            self.turn.notify()

    def fail(self, error: BaseException) -> None:
        with self.turn:
            if self.failure is None:
                self.failure = error
            self.turn.notify_all()

    def consider(self, rel: bytes, picks: list[Pick]) -> None:
        """Count the inodes with several links once, and offer files to the heaps."""
        with self.lock:
            for name, mode, size, blocks, sec, nsec, dev, ino, nlink in picks:
                if nlink > 1:
                    if ino in self.linked:
                        continue
                    self.linked.add(ino)
                    self.linked_bytes += blocks
                    if not stat.S_ISREG(mode):
                        continue
                    self.linked_files += 1
                mtime = sec * _NS + nsec
                path = _join(rel, name)
                if self.keep:
                    self.offer(path, size, blocks, mtime, dev, ino)
                if self.future and mtime > self.future_after:
                    future = (mtime, path)
                    if len(self.futures) < self.keep_future or future > self.futures[0][:2]:
                        entry = FileEntry(path, size, blocks, mtime, dev, ino)
                        if len(self.futures) < self.keep_future:
                            heapq.heappush(self.futures, (*future, entry))
                        else:
                            heapq.heapreplace(self.futures, (*future, entry))

    def offer(self, path: bytes, size: int, blocks: int, mtime: int, dev: int, ino: int) -> None:
        if self.order == "largest":
            key: tuple[Any, ...] = (-blocks, mtime, path)
        else:
            key = (mtime, -blocks, path)
        heap = self.candidates
        if len(heap) == self.keep and not key < heap[0].key:
            return
        item = _Worst(key, FileEntry(path, size, blocks, mtime, dev, ino))
        if len(heap) < self.keep:
            heapq.heappush(heap, item)
        else:
            heapq.heapreplace(heap, item)
        if len(heap) == self.keep:
            worst = heap[0].entry
            self.threshold = (2, worst.blocks_bytes, *divmod(worst.mtime_ns, _NS))


class _Worker:
    """One thread's depth-first walk: its stack of folders to visit and its open folders."""

    def __init__(self, walk: _Walk) -> None:
        self.walk = walk
        self.root_dev = walk.root.dev
        self.order = 0 if walk.order == "largest" else 1
        # (parent, name) of folders still to visit; popped at the right (depth first), handed
        # over from the left (the shallowest: likely the most work for an idle thread).
        self.stack: collections.deque[tuple[_Dir, bytes]] = collections.deque()
        self.open: dict[_Dir, None] = {}  # folders whose descriptor we hold, oldest first
        # The folder another thread handed over, open until we have visited all of it: our
        # own root, so that reopening a folder never climbs into the other thread's part.
        self.base: _Dir | None = None
        self.bytes_used = self.files = self.dirs = self.errors = 0

    def run(self) -> None:
        walk = self.walk
        try:
            while walk.failure is None:
                if not self.stack:
                    self.drop_base()
                    handed = walk.take()
                    if handed is None:
                        return
                    folder, subdirs = handed
                    folder.owner, self.base = self, folder
                    self.push(folder, subdirs)
                    continue
                if (
                    walk.idle > len(walk.handed)
                    and len(self.stack) > 1
                    and self.usable(self.stack[0][0])
                ):
                    # For an idle thread: the shallowest folder still to visit (likely the
                    # most work), visited here. Not if its parent was closed: in a tree deep
                    # enough for that, reopening for every hand-over would cost more than it
                    # gains.
                    visited = self.visit(*self.stack.popleft())
                    if visited is not None:
                        walk.hand_over(*visited)
                    continue
                visited = self.visit(*self.stack.pop())
                if visited is not None:
                    self.hold(visited[0])
                    self.push(*visited)
        except BaseException as error:
            walk.fail(error)
        finally:
            self.drop_base()
            for folder in self.open:
                if folder.fd is not None:
                    os.close(folder.fd)
                    folder.fd = None
            self.open.clear()

    def usable(self, folder: _Dir) -> bool:
        return folder.owner is None or (folder.owner is self and folder.fd is not None)

    def visit(self, parent: _Dir, name: bytes) -> tuple[_Dir, list[bytes]] | None:
        """Open a subfolder of ``parent`` without following a symlink, count and list it.
        Returns it, open, with its subfolders' names; None if there are none (or it could not
        be opened)."""
        walk = self.walk
        parent_fd = parent.fd if self.usable(parent) else self.reopen(parent)
        if parent_fd is None:
            self.errors += 1
            self.done_with(parent)
            return None
        # The lister closes the parent after opening its last subfolder: one call, one GIL
        # hand-over per folder, when it fits in one batch.
        last = parent.owner is self and parent.pending == 1 and parent is not self.base
        want, t_blocks, t_sec, t_nsec = walk.threshold
        status, fd, dev, ino, dir_blocks, subdirs, blocks, files, picks, errors, eof, source = (
            walk.listers.visit(
                parent_fd,
                name,
                last,
                self.root_dev,
                want,
                self.order,
                t_blocks,
                t_sec,
                t_nsec,
                walk.future,
                walk.f_sec,
                walk.f_nsec,
                BATCH,
            )
        )
        if last:
            parent.pending, parent.fd = 0, None
            self.open.pop(parent, None)
        else:
            self.done_with(parent)
        if dir_blocks >= 0:
            self.dirs += 1
            self.bytes_used += dir_blocks
        if status:  # -1: a mount point, neither entered nor counted
            self.errors += status > 0
            return None
        rel = _join(parent.rel, name)
        folder = _Dir(parent, name, rel, dev, ino, None if fd < 0 else fd, self)
        self.tally(folder, blocks, files, picks, errors)
        if not eof:
            subdirs += self.list_rest(folder, source)
        if not subdirs:
            if folder.fd is not None:  # listed in several batches: still open
                os.close(folder.fd)
            return None
        return folder, subdirs

    def list_rest(self, folder: _Dir, source: Any) -> list[bytes]:
        """The rest of a folder's listing: its subfolders' names."""
        walk, eof = self.walk, False
        subdirs: list[bytes] = []
        try:
            if walk.listers is _python and isinstance(source, int):
                source = os.scandir(source)  # the root
            while not eof:
                want, t_blocks, t_sec, t_nsec = walk.threshold
                names, blocks, files, picks, errors, eof = walk.listers.batch(
                    source,
                    self.root_dev,
                    want,
                    self.order,
                    t_blocks,
                    t_sec,
                    t_nsec,
                    walk.future,
                    walk.f_sec,
                    walk.f_nsec,
                    BATCH,
                )
                subdirs += names
                self.tally(folder, blocks, files, picks, errors)
        finally:
            if not isinstance(source, int):
                source.close()
        return subdirs

    def tally(self, folder: _Dir, blocks: int, files: int, picks: list[Pick], errors: int) -> None:
        self.bytes_used += blocks
        self.files += files
        self.errors += errors
        if picks:
            self.walk.consider(folder.rel, picks)

    def push(self, folder: _Dir, subdirs: list[bytes]) -> None:
        folder.pending += len(subdirs)
        self.stack.extend((folder, name) for name in reversed(subdirs))

    def reopen(self, folder: _Dir) -> int | None:
        """Reopen a folder of ours whose descriptor was closed, from the nearest ancestor we
        hold (or the root), each step ``O_NOFOLLOW`` and checked to be the same folder as when
        the walk first met it. Another thread's folders on the way are only passed through."""
        chain = []
        step = folder
        while not self.usable(step):
            chain.append(step)
            assert step.parent is not None  # the root is always usable
            step = step.parent
        fd, transient = step.fd, False
        assert fd is not None
        for below in reversed(chain):
            try:
                opened: int | None = os.open(below.name, DIR_FLAGS, dir_fd=fd)
            except OSError:
                opened = None
            finally:
                if transient:
                    os.close(fd)
            if opened is None:
                return None
            try:
                st = os.fstat(opened)
                same = (st.st_dev, st.st_ino) == (below.dev, below.ino)
            except OSError:
                same = False
            if not same:
                os.close(opened)  # replaced since we were there: what is in it now is not ours
                return None
            fd = opened
            transient = not (below.owner is self and below.pending)
            if not transient:
                below.fd = opened
                self.hold(below)
        return folder.fd

    def done_with(self, parent: _Dir) -> None:
        if parent.owner is self:
            parent.pending -= 1
            if not parent.pending:
                self.release(parent)

    def hold(self, folder: _Dir) -> None:
        self.open[folder] = None
        if len(self.open) > OPEN_FOLDERS:
            self.release(next(iter(self.open)))

    def release(self, folder: _Dir) -> None:
        if folder.owner is self and folder.fd is not None and folder is not self.base:
            os.close(folder.fd)
            folder.fd = None
            self.open.pop(folder, None)

    def drop_base(self) -> None:
        if self.base is not None and self.base.fd is not None:
            os.close(self.base.fd)
            self.base.fd = None
        self.base = None


def scan_tree(
    root: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    *,
    keep: int = 0,
    order: Order = "largest",
    now_ns: int | None = None,
    future_slack_ns: int | None = None,
    keep_future: int = 100,
    threads: int | None = None,
) -> ScanResult:
    """Walk the tree under ``root`` without following symlinks (see the module's docstring).

    ``keep``: how many candidates to return, the first in ``order`` (``largest``: most
    allocated bytes first, older first on a tie; ``oldest``: least recently modified first,
    larger first on a tie; then by path). ``future_mtimes``: up to ``keep_future`` regular
    files modified after ``now_ns + future_slack_ns`` (when both are given), furthest in the
    future first. ``threads``: how many threads walk (default: the CPUs we may run on, at most
    :data:`MAX_THREADS`; always 1 without the compiled helper, where more would only fight for
    the GIL).
    """
    if order not in ("largest", "oldest"):
        raise ValueError(f"order must be 'largest' or 'oldest', not {order!r}")
    if keep < 0 or keep_future < 0:
        raise ValueError("keep and keep_future must not be negative")
    listers = _native or _python
    if _native is None or threads is None:
        threads = default_threads()
    future_after = None
    if now_ns is not None and future_slack_ns is not None:
        future_after = now_ns + future_slack_ns
    try:
        root_fd = os.open(root, DIR_FLAGS)
    except OSError:
        return ScanResult(errors=1)
    try:
        root_st = os.fstat(root_fd)
        walk = _Walk(
            root_fd, root_st, keep, order, future_after, keep_future, max(1, threads), listers
        )
        result = walk.run()
        result.dirs += 1
        result.bytes_used += root_st.st_blocks * 512
        return result
    finally:
        os.close(root_fd)
