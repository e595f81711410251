"""Which of this process's descriptors are open on a tree: the leak checks of the storage tests."""

from __future__ import annotations

import os
from pathlib import Path


def fds_into(root: Path) -> set[int]:
    """This process's descriptors open on ``root`` or below. Only these: other threads of the
    test process (a worker, a connection pool) open and close their own meanwhile, so the
    process's count of descriptors says nothing about the code under test."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:
            continue  # closed since the listing
        except OSError:
            found.add(int(name))  # a path too long to print: only a deep test tree has those
            continue
        if target == str(root) or target.startswith(f"{root}/"):
            found.add(int(name))
    return found
