"""What the file-system layer of storage (scan, removal) and its callers exchange, and how a
file name (bytes) is shown to people (:func:`path_text`).

No Django here: the scan and the removal work on plain paths and file descriptors, so they can
be tested, benchmarked and property-tested on their own.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Literal

Order = Literal["largest", "oldest"]


@dataclass(frozen=True, order=False)
class FileEntry:
    """One regular file seen by a scan, identified well enough to be removed safely later.

    ``rel_path`` is relative to the scanned tree's root, as bytes (names need not be UTF-8),
    with ``/`` separators and no leading slash. ``blocks_bytes`` is what it occupies on disk
    (``st_blocks * 512``, what ``du`` counts and what quotas count); ``size`` its length.
    Removal re-checks ``dev``, ``ino``, ``size`` and ``mtime_ns`` and skips a file that changed.
    """

    rel_path: bytes
    size: int
    blocks_bytes: int
    mtime_ns: int
    dev: int
    ino: int


@dataclass
class ScanResult:
    """A tree's usage and, bounded in number, the files a cleanup would remove first."""

    bytes_used: int = 0  # allocated bytes; a hard-linked file counted once
    files: int = 0
    dirs: int = 0
    errors: int = 0  # folders that could not be read, entries that vanished mid-scan
    # The first ``keep`` files in cleanup order (``largest``: biggest first; ``oldest``: least
    # recently modified first), at most ``keep`` of them: a bounded heap, never every file.
    candidates: list[FileEntry] = field(default_factory=list)
    # Files whose modification time is more than the slack in the future (bounded too).
    future_mtimes: list[FileEntry] = field(default_factory=list)


@dataclass(frozen=True)
class Removal:
    """What became of one candidate: ``removed`` or skipped with a reason (``changed``,
    ``vanished``, ``not_regular``, ``symlink_in_path``, ``error: …``)."""

    entry: FileEntry
    removed: bool
    reason: str = ""


def path_text(raw: bytes) -> str:
    """A file name (bytes, not necessarily UTF-8) as safe, unambiguous text.

    UTF-8 is decoded; a byte that is not valid UTF-8, an ASCII control character and the
    backslash itself become ``\\xNN`` (the byte's value); other invisible or direction-changing
    characters (Unicode categories Cc, Cf, Zl, Zp) become ``\\uXXXX``. So every escape starts
    with a backslash that the name itself cannot contribute, and nothing in the text can break
    a page, a log line or the database's UTF-8.
    """
    out: list[str] = []
    for char in raw.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F or char == "\\":
            out.append(f"\\x{code:02x}")
        elif code > 0x7F and unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)
