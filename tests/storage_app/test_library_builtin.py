"""The notebooks library that ships with the portal (``NOTEBOOKS_LIBRARY_URL=builtin``).

Real git throughout: the portal's repository of ``images/notebooks-library`` is built, cloned
the way a spawn clones it, and each notebook is executed in the session environment (the
software JupyterLab's kernels run) from such a clone, read-only, as a user would run it.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from sessions_app.spawners.software import session_software, software_problem
from storage_app.layout import LIBRARY_DIR_NAME, session_folders_prepare
from storage_app.library import NOT_CONFIGURED_MESSAGE, library_clone
from storage_app.library_builtin import (
    REPOSITORY_NAME,
    builtin_library_commit,
    builtin_library_url,
    default_source,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = REPO_ROOT / "images" / "notebooks-library"
NOTEBOOKS = (
    "01-open-grib-with-earthkit.ipynb",
    "02-averages-with-xarray.ipynb",
    "03-map-with-cartopy.ipynb",
)
SAMPLE = Path("data") / "t2m-sample.grib2"
# Runs one notebook with the session environment's Python: argv[1] in, argv[2] out (executed).
RUNNER = """
import sys
import nbformat
from nbclient import NotebookClient

notebook = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(notebook, timeout=240, kernel_name="python3").execute()
nbformat.write(notebook, sys.argv[2])
"""


def copy_source(tmp_path: Path) -> Path:
    copy = tmp_path / "source"
    shutil.copytree(SOURCE, copy)
    return copy


def clone(url: str, home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    library = home / LIBRARY_DIR_NAME
    result = library_clone(library, url, "", 60)
    assert result.status == "cloned", result.message
    return library


# --- the repository ---------------------------------------------------------------------------


def test_the_default_source_is_the_library_in_the_portals_tree() -> None:
    assert default_source() == SOURCE
    assert {path.name for path in SOURCE.glob("*.ipynb")} == set(NOTEBOOKS)


def test_a_clone_of_the_built_repository_gives_the_library_read_only(tmp_path: Path) -> None:
    repository = tmp_path / "var" / REPOSITORY_NAME

    url = builtin_library_url(SOURCE, repository)
    library = clone(url, tmp_path / "home")

    assert url == repository.as_uri()
    assert re.fullmatch(r"[0-9a-f]{40}", builtin_library_commit(repository))
    assert sorted(
        str(path.relative_to(library)) for path in library.rglob("*") if path.is_file()
    ) == sorted(["README.md", "make_sample_data.py", str(SAMPLE), *NOTEBOOKS])
    for name in ["README.md", str(SAMPLE), *NOTEBOOKS]:
        assert (library / name).read_bytes() == (SOURCE / name).read_bytes()
        assert stat.S_IMODE((library / name).stat().st_mode) == 0o444
    for folder in (library, library / "data"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o555


def test_the_notebooks_are_committed_without_outputs_and_the_sample_is_small() -> None:
    for name in NOTEBOOKS:
        notebook = json.loads((SOURCE / name).read_text())
        code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
        assert code, name
        assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)
    sample = (SOURCE / SAMPLE).read_bytes()
    assert sample[:4] == b"GRIB" and sample[-4:] == b"7777"
    assert 10_000 < len(sample) < 100_000


def test_the_same_content_gives_the_same_commit_and_a_change_a_new_one(tmp_path: Path) -> None:
    source = copy_source(tmp_path)
    repository = tmp_path / "var" / REPOSITORY_NAME

    builtin_library_url(source, repository)
    first = builtin_library_commit(repository)
    builtin_library_url(source, repository)
    # Leftovers of someone's work in the folder are not content.
    (source / ".ipynb_checkpoints").mkdir()
    (source / ".ipynb_checkpoints" / "x-checkpoint.ipynb").write_text("{}")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "make_sample_data.cpython-311.pyc").write_bytes(b"\0")
    builtin_library_url(source, repository)

    assert builtin_library_commit(repository) == first
    # Another portal (another var folder) serves the very same commit.
    elsewhere = tmp_path / "elsewhere" / REPOSITORY_NAME
    builtin_library_url(source, elsewhere)
    assert builtin_library_commit(elsewhere) == first

    (source / "README.md").write_text("# A new library\n")
    builtin_library_url(source, repository)
    second = builtin_library_commit(repository)

    assert second != first
    assert (clone(repository.as_uri(), tmp_path / "home") / "README.md").read_text() == (
        "# A new library\n"
    )


def test_a_half_made_repository_is_made_again(tmp_path: Path) -> None:
    repository = tmp_path / "var" / REPOSITORY_NAME
    (repository / "objects").mkdir(parents=True)  # a worker killed during `git init`

    builtin_library_url(SOURCE, repository)

    assert (clone(repository.as_uri(), tmp_path / "home") / NOTEBOOKS[0]).is_file()


def test_workers_building_at_once_take_turns(tmp_path: Path) -> None:
    repository = tmp_path / "var" / REPOSITORY_NAME

    with ThreadPoolExecutor(max_workers=4) as pool:
        urls = list(pool.map(lambda _: builtin_library_url(SOURCE, repository), range(8)))

    assert set(urls) == {repository.as_uri()}
    assert (clone(repository.as_uri(), tmp_path / "home") / NOTEBOOKS[0]).is_file()


# --- the portal's settings and back-ends ------------------------------------------------------


def test_builtin_is_resolved_for_the_local_back_end(settings: Any, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path / "var"
    settings.NOTEBOOKS_LIBRARY_URL = "builtin"
    settings.NOTEBOOKS_LIBRARY_BRANCH = "an-operators-branch"  # not in the built-in repository

    folders = session_folders_prepare(1)

    commit = builtin_library_commit(tmp_path / "var" / REPOSITORY_NAME)
    assert folders.library_status == "cloned"
    assert folders.library_message.startswith(f"Notebooks library: cloned at commit {commit[:12]}")
    assert (folders.library / NOTEBOOKS[2]).read_bytes() == (SOURCE / NOTEBOOKS[2]).read_bytes()


def test_builtin_means_no_library_on_kubernetes(settings: Any) -> None:
    settings.NOTEBOOKS_LIBRARY_URL = "builtin"
    settings.SPAWNER = "kubernetes"
    from sessions_app.spawners import get_spawner

    get_spawner.cache_clear()
    try:
        spawner = get_spawner()
        assert spawner.clones_library
        assert spawner.settings.library_url == ""  # type: ignore[attr-defined]
    finally:
        get_spawner.cache_clear()

    folders = session_folders_prepare(1, clone=False)

    assert (folders.library_status, folders.library_message) == (
        "not_configured",
        NOT_CONFIGURED_MESSAGE,
    )
    assert not folders.library.exists()


def test_a_library_that_cannot_be_prepared_is_reported_and_keeps_the_old_copy(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.VAR_DIR = tmp_path / "var"
    settings.NOTEBOOKS_LIBRARY_URL = "builtin"
    session_folders_prepare(1)
    monkeypatch.setattr("storage_app.library_builtin.default_source", lambda: tmp_path / "missing")

    folders = session_folders_prepare(1)

    assert folders.library_status == "failed"
    assert folders.library_message == (
        "Notebooks library: clone failed (the portal could not prepare its notebooks); "
        "the copy from your previous session is kept."
    )
    assert (folders.library / NOTEBOOKS[0]).is_file()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "builtin"), ("builtin", "builtin"), ("", ""), ("none", ""), ("None", "")],
)
def test_the_setting_defaults_to_builtin_and_none_means_no_library(
    value: str | None, expected: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PORTAL_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
    }
    env.pop("NOTEBOOKS_LIBRARY_URL", None)
    if value is not None:
        env["NOTEBOOKS_LIBRARY_URL"] = value
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; print(settings.NOTEBOOKS_LIBRARY_URL)",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == expected


# --- the notebooks, executed ------------------------------------------------------------------


def session_environment() -> Path:
    """The session software's prefix (``LOCAL_SESSION_ENV``): fail on CI without it, else skip."""
    problem = software_problem(django_settings.LOCAL_SESSION_ENV)
    if problem:
        message = f"the library's notebooks are executed with the session software: {problem}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return session_software(django_settings.LOCAL_SESSION_ENV).prefix


@pytest.fixture(scope="module")
def user_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's home with the library cloned into it the way a spawn does."""
    root = tmp_path_factory.mktemp("builtin-library")
    home = root / "home"
    clone(builtin_library_url(SOURCE, root / "var" / REPOSITORY_NAME), home)
    return home


def execute(notebook: str, home: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """Run ``notebook`` from the library in ``home`` (its folder as the working directory, as in
    JupyterLab); return the outputs of its code cells, all of them."""
    env = session_environment()
    library = home / LIBRARY_DIR_NAME
    executed = tmp_path / notebook
    result = subprocess.run(
        [str(env / "bin" / "python"), "-c", RUNNER, str(library / notebook), str(executed)],
        cwd=library,
        env={
            "PATH": f"{env / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "TMPDIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=270,
        check=False,
    )
    assert result.returncode == 0, f"{notebook} failed:\n{result.stderr[-4000:]}"
    cells = json.loads(executed.read_text())["cells"]
    outputs = [
        output for cell in cells if cell["cell_type"] == "code" for output in cell["outputs"]
    ]
    errors = [output for output in outputs if output["output_type"] == "error"]
    assert not errors, errors
    return outputs


def text_of(outputs: list[dict[str, Any]]) -> str:
    parts = []
    for output in outputs:
        if output["output_type"] == "stream":
            parts.append("".join(output["text"]))
        elif "text/plain" in output.get("data", {}):
            parts.append("".join(output["data"]["text/plain"]))
    return "\n".join(parts)


def test_notebook_01_opens_the_grib_file_and_makes_a_dataset(
    user_home: Path, tmp_path: Path
) -> None:
    text = text_of(execute(NOTEBOOKS[0], user_home, tmp_path))

    assert "4 fields" in text
    assert "2 metre temperature in kelvin" in text
    assert "('valid_time', 'latitude', 'longitude') (4, 73, 144)" in text


def test_notebook_02_computes_a_plausible_global_mean(user_home: Path, tmp_path: Path) -> None:
    text = text_of(execute(NOTEBOOKS[1], user_home, tmp_path))

    found = re.search(r"Area-weighted global mean 2 m temperature: ([-\d.]+) K", text)
    assert found, text
    mean = float(found.group(1))
    assert math.isfinite(mean) and 280.0 < mean < 292.0  # the Earth's is about 287 K
    plain = re.search(r"The plain mean, ([-\d.]+) K", text)
    assert plain and float(plain.group(1)) < mean  # the poles' weight, without the weights
    assert (user_home / "t2m-daily-mean.nc").read_bytes()[:4] == b"\x89HDF"  # saved at home


def test_notebook_03_draws_its_maps_without_downloading(user_home: Path, tmp_path: Path) -> None:
    outputs = execute(NOTEBOOKS[2], user_home, tmp_path)

    images = [
        base64.b64decode(output["data"]["image/png"])
        for output in outputs
        if "image/png" in output.get("data", {})
    ]
    assert len(images) == 2  # the world and Europe
    assert all(image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 20_000 for image in images)
    # Cartopy keeps what it downloads (Natural Earth coastlines...) under the home: nothing.
    downloads = user_home / ".local" / "share" / "cartopy"
    assert not downloads.exists() or not any(path.is_file() for path in downloads.rglob("*"))
    assert "Download" not in text_of(outputs)
