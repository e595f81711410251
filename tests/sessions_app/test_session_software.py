"""The service's software in a real local session, used the way a notebook uses it.

Each test launches a session (multi-user mode: the person's account, the sandbox, the packet
filter) from the session software that `make test` builds (images/session/build_local_env.py),
and runs code in its kernel over the kernel websocket: every package that pypi-map.toml says is
installed imports, the programs it names run, earthkit opens a GRIB file and xarray averages it,
a cartopy map renders to PNG, and what the person installs with ``pip install --user`` from an
index is there in the next session.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings

from sessions_app.spawners.software import session_software, software_problem
from tests.sessions_app.local_world import World, needs_isolation
from tests.sessions_app.test_spawn_folders import PACKAGE, make_wheel

pytestmark = [pytest.mark.integration, needs_isolation]
MAP = tomllib.loads(
    (Path(__file__).resolve().parents[2] / "images/session/pypi-map.toml").read_text()
)
PK = 99_170
# Without the built software these tests cannot say anything: on CI (`make test` builds it
# first) that is a failure; on a developer's machine that skipped the build, a skip that says so.
SOFTWARE_PROBLEM = software_problem(settings.LOCAL_SESSION_ENV)
if SOFTWARE_PROBLEM and not os.environ.get("CI"):
    pytestmark.append(pytest.mark.skip(reason=SOFTWARE_PROBLEM))


def last_json(world: World, pk: int, code: str) -> Any:
    session = world.sessions[-1] if world.sessions else world.start(pk)
    result = session.run(code, timeout=300)
    assert result.status == "ok", (result.ename, result.stdout[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_session_runs_from_the_session_software_not_the_portals(world: World) -> None:
    assert not SOFTWARE_PROBLEM, SOFTWARE_PROBLEM
    software = session_software(settings.LOCAL_SESSION_ENV)

    found = last_json(
        world,
        PK,
        "import json, os, sys, jupyter_server, shutil\n"
        "print(json.dumps([sys.executable, sys.prefix, jupyter_server.__file__,"
        " os.path.exists(" + repr(str(Path(settings.BASE_DIR) / ".venv")) + "),"
        " shutil.which('jupyter-lab')]))",
    )

    executable, prefix, server, portal_venv_visible, lab = found
    home_env = str(world.sessions[0].request.home_dir) + "/.local"
    assert (
        executable.startswith(f"{home_env}/bin/python") and prefix == home_env
    )  # the person's layer
    assert server.startswith(str(software.prefix))  # the shared software, under it
    assert lab == str(software.bin / "jupyter-lab")
    assert portal_venv_visible is False  # the portal's own environment is not in the sandbox


def test_the_machines_own_python_packages_are_not_in_the_session(world: World) -> None:
    software = session_software(settings.LOCAL_SESSION_ENV)
    hidden = [str(path) for path in software.hidden]

    seen = last_json(
        world,
        PK,
        f"import json, os, sys\nprint(json.dumps([[os.listdir(p) for p in {hidden!r}], sys.path]))",
    )

    listed, path = seen
    assert all(entries == [] for entries in listed)  # shown empty inside
    # The person's environment first, then the session software; the machine's own last.
    home = str(world.sessions[0].request.home_dir)
    site = [p for p in path if p.endswith("site-packages")]
    assert site[0].startswith(home) and site[1].startswith(str(software.prefix)), site


def test_every_package_the_map_installs_imports_and_every_program_runs(world: World) -> None:
    modules = {name: e["import"] for name, e in MAP["packages"].items() if "import" in e}
    checks = {name: e["check"] for name, e in MAP["packages"].items() if "check" in e}
    code = f"""
import importlib, json, subprocess, traceback
failed = {{}}
for name, module in {modules!r}.items():
    try:
        importlib.import_module(module)
    except Exception as exc:
        failed[name] = repr(exc)[:300]
for name, command in {checks!r}.items():
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        failed[name] = (done.stdout + done.stderr)[-300:]
print(json.dumps(failed))
"""

    failed = last_json(world, PK, code)

    assert len(modules) >= 30 and len(checks) >= 3
    assert failed == {}


EARTHKIT = """
import json, os
import eccodes, numpy as np
import earthkit.data as ekd
# A GRIB file made from ecCodes' own sample (compiled into the eccodes wheel): a 2 m temperature
# field on a regular 1.5 degree grid, two steps.
path = os.path.expanduser("~/t2m.grib")
with open(path, "wb") as out:
    for step in (0, 6):
        gid = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
        eccodes.codes_set_key_vals(gid, "Ni=240,Nj=121,iDirectionIncrementInDegrees=1.5,"
            "jDirectionIncrementInDegrees=1.5,latitudeOfFirstGridPointInDegrees=90,"
            "latitudeOfLastGridPointInDegrees=-90,longitudeOfFirstGridPointInDegrees=0,"
            "longitudeOfLastGridPointInDegrees=358.5")
        eccodes.codes_set(gid, "shortName", "2t")
        eccodes.codes_set(gid, "step", step)
        lat = np.linspace(90, -90, 121)[:, None]
        eccodes.codes_set_values(gid, (288.0 - 30 * np.abs(lat / 90) ** 2 + 0 * np.zeros((1, 240))
                                       + step / 6).ravel())
        eccodes.codes_write(gid, out)
        eccodes.codes_release(gid)
fields = ekd.from_source("file", path).to_fieldlist()
ds = fields.to_xarray()
var = ds[list(ds.data_vars)[0]]
weights = np.cos(np.deg2rad(ds["latitude"]))
mean = float(var.weighted(weights).mean(("latitude", "longitude")).mean())
print(json.dumps([len(fields), fields[0].metadata("shortName"), list(var.dims), mean]))
"""


def test_earthkit_opens_a_grib_file_and_xarray_averages_it(world: World) -> None:
    count, short_name, dims, mean = last_json(world, PK, EARTHKIT)

    assert count == 2 and short_name == "2t"
    assert {"latitude", "longitude"} <= set(dims)
    # The field is 288 K at the equator and 258 K at the poles: its area mean lies between.
    assert 270.0 < mean < 288.5


MAP_PNG = """
import io, json
import matplotlib
matplotlib.use("agg")
import matplotlib.pyplot as plt
import cartopy.crs as ccrs
import numpy as np
fig = plt.figure(figsize=(6, 3))
ax = plt.axes(projection=ccrs.Robinson())
ax.stock_img()  # shipped with cartopy: no download (Natural Earth coastlines would need one)
lon, lat = np.meshgrid(np.linspace(-180, 180, 73), np.linspace(-90, 90, 37))
field = np.cos(np.deg2rad(lat)) * np.sin(np.deg2rad(lon))
ax.contour(lon, lat, field, transform=ccrs.PlateCarree())
ax.gridlines()
buffer = io.BytesIO()
fig.savefig(buffer, format="png", dpi=80)
data = buffer.getvalue()
print(json.dumps([data[:8].hex(), len(data)]))
"""


def test_a_cartopy_map_renders_to_png(world: World) -> None:
    header, size = last_json(world, PK, MAP_PNG)

    assert header == "89504e470d0a1a0a"  # PNG
    assert size > 20_000  # the stock image and the contours, not an empty frame


def _index(root: Path, wheel: Path) -> Path:
    """A PEP 503 "simple" index of one wheel, in a folder the session can read."""
    project = root / "simple" / PACKAGE.replace("_", "-")
    project.mkdir(parents=True)
    data = wheel.read_bytes()
    (project / wheel.name).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    (project / "index.html").write_text(
        f'<html><body><a href="{wheel.name}#sha256={digest}">{wheel.name}</a></body></html>\n'
    )
    (root / "simple" / "index.html").write_text(
        f'<html><body><a href="{project.name}/">{project.name}</a></body></html>\n'
    )
    return root / "simple"


def test_pip_install_user_from_an_index_is_there_in_the_next_session(world: World) -> None:
    first = world.start(PK)
    scratch = Path(first.request.scratch_dir or "")
    # The index sits in the person's scratch (theirs, readable in the sandbox); the packet
    # filter keeps sessions off this machine's addresses, so it is a file:// index.
    index_root = scratch / "index"
    wheel = make_wheel(world.tmp_path / "wheels", "1.0")
    simple = _index(index_root, wheel)
    uid = int(first.state["uid"])
    for folder, _dirs, files in os.walk(index_root):
        for path in [folder, *(os.path.join(folder, name) for name in files)]:
            os.chown(path, uid, uid)
    install = f"""
import json, subprocess
done = subprocess.run(["pip", "install", "--user", "--index-url", "file://{simple}", "{PACKAGE}"],
                      capture_output=True, text=True)
print(json.dumps([done.returncode, (done.stdout + done.stderr)[-1500:]]))
"""
    code, output = last_json(world, PK, install)
    assert code == 0, output
    world.close()
    world.sessions.clear()

    second = world.start(PK)
    found = second.run(
        f"import {PACKAGE}, json; print(json.dumps([{PACKAGE}.VERSION, {PACKAGE}.__file__]))"
    )

    assert found.status == "ok", found
    version, where = json.loads(found.stdout.strip().splitlines()[-1])
    assert version == "1.0"
    assert where.startswith(f"{second.request.home_dir}/.local/lib/python3.11/site-packages/")


EXTENSIONS = """
import json, subprocess
server = subprocess.run(["jupyter", "server", "extension", "list"], capture_output=True, text=True)
lab = subprocess.run(["jupyter", "labextension", "list"], capture_output=True, text=True)
print(json.dumps([server.stdout + server.stderr, lab.stdout + lab.stderr]))
"""


def test_lab_has_git_widgets_proxy_voila_and_the_portal_extension_and_voila_renders(
    world: World,
) -> None:
    server, lab = (re.sub(r"\x1b\[[0-9;]*m", "", text) for text in last_json(world, PK, EXTENSIONS))
    session = world.sessions[0]
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "metadata": {},
                "outputs": [],
                "source": "print(6 * 7)",
            }
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    headers = {"Authorization": f"token {session.token}"}
    saved = requests.put(
        f"{session.server_url}api/contents/answer.ipynb",
        json={"type": "notebook", "content": notebook},
        headers=headers,
        timeout=30,
    )
    rendered = requests.get(
        f"{session.server_url}voila/render/answer.ipynb", headers=headers, timeout=180
    )

    for name in ("jupyterlab_git", "jupyter_server_proxy", "voila"):
        assert re.search(rf"{name}\S*\s+enabled", server), server
    for name in (
        "@jupyterlab/git",
        "@jupyter-widgets/jupyterlab-manager",
        "@jupyter-portal/session-status",
        "@jupyterhub/jupyter-server-proxy",
        "@voila-dashboards/jupyterlab-preview",
    ):
        assert re.search(rf"{re.escape(name)} v\S+ enabled", lab), lab
    assert saved.status_code == 201, saved.text
    assert rendered.status_code == 200 and "42" in rendered.text  # voila ran the notebook
