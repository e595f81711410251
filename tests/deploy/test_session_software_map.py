"""The local session software's map (images/session/pypi-map.toml) stays in step with the
service's environment (images/session/environment.yml) and with the pins (constraints.txt).

The map says where each conda package of the environment comes from when the local back-end
builds the session environment from PyPI and Debian (images/session/build_local_env.py): a
package added to environment.yml without a line here, or a requirement without a pin, fails.
"""

from __future__ import annotations

import json
import re
import tomllib

import pytest
import yaml

from tests.deploy.rendering import REPO
from tests.deploy.test_images import SESSION_DOCKERFILE, copy_sources

SESSION = REPO / "images" / "session"
MAP = tomllib.loads((SESSION / "pypi-map.toml").read_text())
ENVIRONMENT = yaml.safe_load((SESSION / "environment.yml").read_text())
_KEYS = {"pypi", "debian", "import", "check", "missing", "note"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[a-z,]+\])?==([^\s=]+)$")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def environment_packages() -> list[str]:
    """The conda names of environment.yml, and its pip list, in order (no version parts)."""
    names = []
    for dep in ENVIRONMENT["dependencies"]:
        if isinstance(dep, dict):
            names += [str(entry) for entry in dep["pip"]]
        else:
            names.append(re.split(r"[=<>]", str(dep))[0])
    return names


def constraints() -> dict[str, str]:
    pins = {}
    for line in (SESSION / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_canonical(name)] = version.strip()
    return pins


def test_every_package_of_the_environment_is_mapped_and_nothing_else() -> None:
    wanted = environment_packages()

    assert list(MAP["packages"]) == wanted  # same packages, same order: easy to review


@pytest.mark.parametrize("name", list(MAP["packages"]))
def test_each_entry_says_where_the_package_comes_from(name: str) -> None:
    entry = MAP["packages"][name]

    assert set(entry) <= _KEYS, f"{name}: unknown keys {set(entry) - _KEYS}"
    if "missing" in entry:
        assert set(entry) <= {"missing", "note"}, f"{name}: missing, yet also provided"
        assert len(entry["missing"]) > 40, f"{name}: say why it cannot be had"
    else:
        assert {"pypi", "debian", "import", "check"} & set(entry), f"{name}: from where?"
    if "debian" in entry:
        assert entry.get("check"), f"{name}: a Debian package needs a check command"


def test_every_requirement_is_pinned_and_the_pins_agree() -> None:
    pins = constraints()
    requirements = list(MAP["extra"]["pypi"])
    for entry in MAP["packages"].values():
        requirements += entry.get("pypi", [])

    for requirement in requirements:
        match = _PIN.match(requirement)
        assert match, f"{requirement!r} is not pinned (name==version)"
        name, version = _canonical(match.group(1)), match.group(3)
        assert pins.get(name) == version, f"{requirement}: constraints.txt pins {pins.get(name)}"


def test_the_server_of_the_sessions_is_pinned_like_the_image_expects() -> None:
    """The local sessions run the JupyterLab of the map's `extra` (the image: conda's)."""
    extra = {_canonical(r.split("==")[0]): r.split("==")[1] for r in MAP["extra"]["pypi"]}

    assert "jupyterlab" in extra and "ipykernel" in extra
    assert extra["jupyterlab"].startswith("4.")  # the extension is built for JupyterLab 4


def test_the_image_and_the_local_environment_install_the_same_lab_extension_and_settings() -> None:
    sources = copy_sources(SESSION_DOCKERFILE)
    built = SESSION / "labextension" / "built"
    package = json.loads((built / "package.json").read_text())
    overrides = json.loads((SESSION / "lab-overrides.json").read_text())

    assert "labextension/built/" in sources and "lab-overrides.json" in sources
    assert package["name"] == "@jupyter-portal/session-status"
    assert any((built / "static").glob("remoteEntry.*.js"))  # a built federated extension
    news = overrides["@jupyterlab/apputils-extension:notification"]
    assert news == {"checkForUpdates": False, "fetchNews": "false"}
