"""The router of the embedded default: nginx on the portal's one address.

nginx (Debian's ``nginx-light``, which has ``auth_request``) serves the portal and each local
session's JupyterLab under ``/user/<route name>/``, and asks the portal's forward-auth endpoint
(``/auth/route/``) before every request into a session, websocket upgrades included. When the
caller is the session's signed-in owner, the answer names the server's Unix socket and the
credential nginx adds (``Authorization: token …``); the browser never sees either. This is the
local twin of the Kubernetes routing (ingress-nginx with ``auth-url``), on the same contract.

Everything nginx writes (its configuration, pid, temporary files) and the web processes' socket
live in one folder of the portal's, ``LOCAL_ROUTER_RUN_DIR``, so nginx runs as root (workers as
``LOCAL_ROUTER_USER``, ``www-data`` by default: they must open the session sockets, whose
folders belong to that group) or, in single-user mode, as the invoking user. As root that folder
is ``/run/jupyter-portal-router`` (``root:www-data``, 2750), not inside ``var/``: ``var/`` is
0700, and the workers must reach the web's socket and their temporary files. Otherwise it is
``VAR_DIR/router``. ``runportal`` starts nginx in the foreground and restarts it if it dies.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import os
import pwd
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

TEMPLATE = Path(__file__).with_name("router_nginx.conf")
# Debian installs nginx in /usr/sbin, which a normal user's PATH may lack.
NGINX_PLACES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
# Notebook uploads: the contents API takes a whole file in one request.
MAX_BODY = "512m"
TEMP_FOLDERS = ("body", "proxy", "fastcgi", "uwsgi", "scgi")

_PLACEHOLDER = re.compile(r"\{\{ (\w+) \}\}")


@dataclass(frozen=True)
class RouterConfig:
    """What the router's configuration depends on."""

    listen_host: str
    listen_port: int
    # Where the portal's web processes listen, in nginx's form: ``unix:/path/web.sock`` or
    # ``127.0.0.1:8001``.
    web_upstream: str
    run_dir: Path
    # The workers' account and group when nginx starts as root; ignored otherwise. No
    # group: the account's own.
    user: str = "www-data"
    group: str = ""
    # How long nginx keeps an allowed forward-auth answer per caller and route; 0: never.
    auth_cache_seconds: int = 2

    @property
    def config_path(self) -> Path:
        return self.run_dir / "nginx.conf"


def nginx_binary() -> str:
    """The nginx program; ``ImproperlyConfigured`` says how to install it when it is missing."""
    found = shutil.which("nginx") or next(
        (place for place in NGINX_PLACES if os.access(place, os.X_OK)), None
    )
    if found is None:
        raise ImproperlyConfigured(
            "nginx is not installed: the portal's router needs it "
            "(make run installs it; by hand: apt-get install nginx-light)."
        )
    return found


def _listen(host: str, port: int) -> str:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return f"{host}:{port}"  # a name nginx resolves at start (localhost)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _worker_account(config: RouterConfig) -> tuple[int, int, str]:
    """uid, gid and group name of the workers' account."""
    for name, value in (("LOCAL_ROUTER_USER", config.user), ("LOCAL_ROUTER_GROUP", config.group)):
        if value and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", value):
            raise ImproperlyConfigured(f"{name}: {value!r} is no account or group name")
    try:
        account = pwd.getpwnam(config.user)
        group = grp.getgrnam(config.group) if config.group else grp.getgrgid(account.pw_gid)
    except KeyError:
        raise ImproperlyConfigured(
            f"LOCAL_ROUTER_USER/LOCAL_ROUTER_GROUP: no account {config.user!r} or group "
            f"{config.group!r} on this machine for nginx's workers"
        ) from None
    return account.pw_uid, group.gr_gid, group.gr_name


def render_config(config: RouterConfig) -> str:
    """nginx.conf for ``config``: the template with its placeholders filled in."""
    user_line = "# Not started as root: the workers run as the invoking user."
    if os.geteuid() == 0:
        _, _, group = _worker_account(config)
        user_line = f"user {config.user} {group};"
    values = {
        "user": user_line,
        "run_dir": str(config.run_dir),
        "max_body": MAX_BODY,
        "web": config.web_upstream,
        "listen": _listen(config.listen_host, config.listen_port),
        "auth_cache": str(max(0, config.auth_cache_seconds)),
        "auth_cache_off": "0" if config.auth_cache_seconds > 0 else "1",
    }
    for name, value in values.items():
        # nginx would read a quote, brace, semicolon or space as syntax.
        if name != "user" and re.search(r"[\s;{}\"'#]", value):
            raise ImproperlyConfigured(f"The router cannot use {value!r} ({name}) in nginx.conf")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], TEMPLATE.read_text())


def _check_reachable(folder: Path, uid: int, gid: int) -> None:
    """The workers must be able to search every folder above ``folder`` (to open the sockets
    and temporary files in it): say which one they cannot, rather than fail per request."""
    for parent in folder.parents:
        info = parent.stat()
        if info.st_uid == uid:
            searchable = info.st_mode & stat.S_IXUSR
        elif info.st_gid == gid:
            searchable = info.st_mode & stat.S_IXGRP
        else:
            searchable = info.st_mode & stat.S_IXOTH
        if not searchable:
            raise ImproperlyConfigured(
                f"LOCAL_ROUTER_RUN_DIR: nginx's workers cannot enter {parent} "
                f"(mode {stat.S_IMODE(info.st_mode):o}); choose a folder outside it"
            )


def prepare(config: RouterConfig) -> Path:
    """Write nginx.conf into the router's folder, make the folders it needs, check it with
    ``nginx -t``; returns the configuration's path. Safe to call before every (re)start."""
    text = render_config(config)
    run_dir = config.run_dir
    for folder in [*reversed(run_dir.parents), run_dir]:
        if not folder.exists():
            # Folders made here for the router only: searchable, not listable (the portal's
            # umask would make them 0700, which the workers could not enter).
            with contextlib.suppress(FileExistsError):  # another portal made it meanwhile
                folder.mkdir(mode=0o711)
                folder.chmod(0o711)
    if os.geteuid() == 0:
        uid, gid, _ = _worker_account(config)
        # Only root and the workers' group may enter: the web's socket in here (0777) is
        # theirs to open, nobody else's.
        os.chown(run_dir, 0, gid)
        run_dir.chmod(0o2750)
        _check_reachable(run_dir, uid, gid)
    else:
        run_dir.chmod(0o700)
    temp = run_dir / "tmp"
    # The kept forward-auth answers hold the callers' cookies and tokens in their keys: none
    # outlives the nginx that kept it.
    shutil.rmtree(temp / "auth-cache", ignore_errors=True)
    temp.mkdir(exist_ok=True)
    # Whatever the umask (runportal's is 077): the workers' group must enter it (nginx hands
    # the folders inside to the workers' account itself).
    temp.chmod(0o750)
    for name in TEMP_FOLDERS:
        # nginx (as root) hands these to the workers' account itself.
        (temp / name).mkdir(exist_ok=True)
    path = config.config_path
    path.write_text(text)
    path.chmod(0o600)
    check = subprocess.run(
        [nginx_binary(), "-t", "-q", "-p", str(run_dir), "-c", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        raise ImproperlyConfigured(f"The router's nginx.conf is refused: {check.stderr.strip()}")
    return path


def command(config: RouterConfig) -> list[str]:
    """nginx in the foreground on the rendered configuration (its master stays the child that
    runportal supervises; SIGQUIT or SIGTERM stop it)."""
    return [
        nginx_binary(),
        "-p",
        str(config.run_dir),
        "-c",
        str(config.config_path),
        "-g",
        "daemon off;",
    ]


def web_socket_path() -> Path:
    """Where the portal's web processes listen behind the router."""
    return Path(settings.LOCAL_ROUTER_RUN_DIR) / "web.sock"


def router_child(
    public_host: str, public_port: int, web_upstream: str
) -> tuple[list[str], Callable[[], None]]:
    """The router as one of runportal's children: its command and what to run before each
    start (render and check the configuration, make its folders)."""
    config = RouterConfig(
        listen_host=public_host,
        listen_port=public_port,
        web_upstream=web_upstream,
        run_dir=Path(settings.LOCAL_ROUTER_RUN_DIR),
        user=settings.LOCAL_ROUTER_USER,
        group=settings.LOCAL_ROUTER_GROUP,
        auth_cache_seconds=settings.LOCAL_ROUTER_AUTH_CACHE_SECONDS,
    )

    def before_start() -> None:
        prepare(config)

    return command(config), before_start
