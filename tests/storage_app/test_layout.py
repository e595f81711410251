"""Where users' folders are: names that cannot meet, private modes, the session's three folders."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage_app.layout import (
    LIBRARY_DIR_NAME,
    folder_name,
    home_ensure,
    home_path,
    scratch_ensure,
    scratch_path,
    session_folders_prepare,
)

GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
}


@pytest.mark.parametrize(
    "username", ["alice", "Alice", "a.b", "a_b", "a-b", "a+b", "alice@example.org", "0", "-x"]
)
def test_names_the_default_validator_allows_are_kept(username: str) -> None:
    assert folder_name(username) == username


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("a b", "a_b"),
        (".a", "a"),
        (".a", "_a"),
        ("a/b", "a_b"),
        ("a/b", "a b"),
        ("é", "_"),
        ("..", "__"),
        ("", "_"),
    ],
)
def test_names_that_looked_alike_get_different_folders(first: str, second: str) -> None:
    assert folder_name(first) != folder_name(second)


@pytest.mark.parametrize("username", [".", "..", ".hidden", "a/../../etc", "/etc", "", "x" * 300])
def test_a_changed_name_is_one_plain_visible_entry(username: str) -> None:
    name = folder_name(username)

    assert "/" not in name and "\0" not in name
    assert name not in {".", ".."}
    assert not name.startswith((".", "~"))
    assert len(name.encode()) <= 255
    assert "~" in name  # the mark of a changed name: no kept name has it


def test_changed_names_are_stable() -> None:
    # A folder name is where a user's data is: it must never change between releases.
    assert folder_name("a b") == "a_b~c8687a08aa5d"
    assert folder_name(".hidden") == "_hidden~1692419006a8"
    assert folder_name("é") == "_~4a99557e4033"


@given(st.text(), st.text())
def test_distinct_usernames_never_share_a_folder(first: str, second: str) -> None:
    if first != second:
        assert folder_name(first) != folder_name(second)


@given(st.text())
def test_no_username_gives_a_hidden_folder_or_a_path(username: str) -> None:
    name = folder_name(username)

    assert name and not name.startswith(".")
    assert "/" not in name and "\0" not in name
    assert len(name.encode()) <= 255


def test_paths_are_under_their_roots(settings: Any) -> None:
    assert home_path("alice") == settings.STORAGE_HOME_ROOT / "alice"
    assert scratch_path("alice") == settings.STORAGE_SCRATCH_ROOT / "alice"
    assert home_path("../x").parent == settings.STORAGE_HOME_ROOT


def test_home_and_scratch_are_made_private_also_when_they_existed_wider(settings: Any) -> None:
    # Given a scratch folder made earlier with the umask's 0755
    old = settings.STORAGE_SCRATCH_ROOT / "alice"
    old.mkdir(parents=True, mode=0o755)

    home = home_ensure("alice")
    scratch = scratch_ensure("alice")

    for path in (home, scratch):
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == os.getuid()
    assert scratch == old


def test_something_else_in_a_users_place_is_refused_not_removed(
    settings: Any, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    settings.STORAGE_HOME_ROOT.mkdir(parents=True)
    (settings.STORAGE_HOME_ROOT / "alice").symlink_to(elsewhere)

    with pytest.raises(NotADirectoryError):
        home_ensure("alice")

    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755


def test_session_folders_without_a_library_configured(settings: Any) -> None:
    folders = session_folders_prepare("alice")

    assert folders.home == home_path("alice") and folders.home.is_dir()
    assert folders.scratch == scratch_path("alice") and folders.scratch.is_dir()
    assert folders.library == folders.home / LIBRARY_DIR_NAME
    assert not folders.library.exists()
    assert (folders.library_status, folders.library_message) == (
        "not_configured",
        "Notebooks library: not configured.",
    )


def test_session_folders_get_a_fresh_library_clone(settings: Any, tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    subprocess.run(["git", "init", "-q", str(origin)], env=GIT_ENV, check=True)
    (origin / "intro.ipynb").write_text("{}\n")
    subprocess.run(["git", "-C", str(origin), "add", "."], env=GIT_ENV, check=True)
    subprocess.run(["git", "-C", str(origin), "commit", "-qm", "x"], env=GIT_ENV, check=True)
    settings.NOTEBOOKS_LIBRARY_URL = f"file://{origin}"

    folders = session_folders_prepare("alice")

    assert folders.library_status == "cloned"
    assert folders.library_message.startswith("Notebooks library: cloned at commit ")
    assert (folders.library / "intro.ipynb").read_text() == "{}\n"
    assert stat.S_IMODE(folders.library.stat().st_mode) == 0o555
