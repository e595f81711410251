"""Multi-user mode, tried as an attacker would: from a kernel in A's session, on this machine.

Each test starts real sessions as real OS accounts in real bubblewrap sandboxes behind the real
packet filter, runs code in A's kernel over the kernel websocket (through the session's Unix
socket) and checks what A could reach. Root only; skipped with the reason elsewhere.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sessions_app.spawners import limits
from sessions_app.spawners.base import ServerStatus
from sessions_app.spawners.isolation import IsolationConfig, status
from sessions_app.spawners.netfilter import CHAIN
from tests.sessions_app.local_world import FIRST_TEST_PK, LiveSession, World, needs_isolation

pytestmark = [pytest.mark.integration, needs_isolation]
A, B = FIRST_TEST_PK, FIRST_TEST_PK + 1


def as_uid(uid: int, code: str) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` as ``uid`` outside any sandbox (the Debian Python: the portal's lives
    under root's 0700 home)."""
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
         "/usr/bin/python3", "-c", code],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def outcome(session_value: str) -> str:
    return session_value.split(":", 1)[0]


PROBE = textwrap.dedent(
    """
    import os, socket

    def probe(action):
        try:
            action()
        except Exception as exc:
            return type(exc).__name__
        return "ok"
    """
)


@pytest.fixture
def pair(world: World) -> tuple[World, LiveSession, LiveSession]:
    a = world.start(A)
    b = world.start(B)
    assert a.run(PROBE).status == "ok"
    return world, a, b


def test_a_runs_as_her_own_account_without_privileges(
    pair: tuple[World, LiveSession, LiveSession],
) -> None:
    world, a, _ = pair
    account = pwd.getpwnam(f"jlp-u{A}")

    ids = a.value("(os.getuid(), os.getgid(), os.getgroups())")
    status_lines = a.value(
        "[l for l in open('/proc/self/status').read().splitlines()"
        " if l.startswith(('Cap', 'NoNewPrivs'))]"
    )

    assert ids == f"({account.pw_uid}, {account.pw_uid}, [])"
    assert account.pw_uid == 200_000 + A and account.pw_shell == "/usr/sbin/nologin"
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert f"'{name}:\\t0000000000000000'" in status_lines
    assert "'NoNewPrivs:\\t1'" in status_lines


def test_homes_and_scratch_belong_to_their_accounts(
    pair: tuple[World, LiveSession, LiveSession],
) -> None:
    _, a, b = pair
    for session, pk in ((a, A), (b, B)):
        for folder in (session.request.home_dir, session.request.scratch_dir):
            assert folder is not None
            st = os.lstat(folder)
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
                200_000 + pk, 200_000 + pk, 0o700,
            )  # fmt: skip
        link = os.lstat(session.request.home_dir / "scratch")
        assert stat.S_ISLNK(link.st_mode) and link.st_uid == 200_000 + pk  # made by the account


def test_a_cannot_reach_b_files_processes_or_server(
    pair: tuple[World, LiveSession, LiveSession],
) -> None:
    world, a, b = pair
    b_home, b_scratch = b.request.home_dir, b.request.scratch_dir
    (b_home / "diary.txt").write_text("B's secret")
    b_pids = limits.session_cgroup(b.request.session_id).pids()  # type: ignore[union-attr]

    inside = {
        "home": a.value(f"probe(lambda: open({str(b_home / 'diary.txt')!r}).read())"),
        "scratch": a.value(f"probe(lambda: os.listdir({str(b_scratch)!r}))"),
        "socket": a.value(
            f"probe(lambda: socket.socket(socket.AF_UNIX).connect({b.state['socket']!r}))"
        ),
        "processes": a.value(
            "sorted({l.split()[1] for p in os.listdir('/proc') if p.isdigit()"
            " for l in open(f'/proc/{p}/status') if l.startswith('Uid:')})"
        ),
    }
    # Outside the sandbox too (its mount namespace is not the only wall): A's uid is refused
    # B's folders, socket and /proc entries by their owners and modes.
    outside = as_uid(
        200_000 + A,
        "import os, socket\n"
        "def probe(f):\n"
        "    try:\n        f(); return 'ok'\n"
        "    except Exception as e:\n        return type(e).__name__\n"
        f"print(probe(lambda: os.listdir({str(b_home)!r})),"
        f" probe(lambda: os.listdir({str(b_scratch)!r})),"
        f" probe(lambda: socket.socket(socket.AF_UNIX).connect({b.state['socket']!r})),"
        f" probe(lambda: open('/proc/{min(b_pids)}/environ').read()))",
    )

    assert inside["home"] == "FileNotFoundError"  # not even there
    assert inside["scratch"] == "FileNotFoundError"
    assert inside["socket"] == "FileNotFoundError"
    # Only A's own uid and the sandbox's root-owned init (bwrap, without capabilities).
    assert inside["processes"] == f"['0', '{200_000 + A}']" or inside["processes"] == (
        f"['{200_000 + A}']"
    )
    assert outside.stdout.split() == ["PermissionError"] * 4, outside.stderr


def test_a_sees_nothing_of_the_portal(
    pair: tuple[World, LiveSession, LiveSession], tmp_path: Path
) -> None:
    _, a, _ = pair
    # A stand-in for the portal's var/: 0700, with a database and a secret in it.
    var = tmp_path / "portal-var"
    var.mkdir(mode=0o700)
    (var / "portal.sqlite3").write_bytes(b"SQLite format 3\x00")
    (var / "secret_key").write_text("portal secret")
    code_dir = Path(__file__).resolve().parents[2]

    seen = {
        name: a.value(f"probe(lambda: open({str(path)!r}, 'rb').read())")
        for name, path in {
            "database": var / "portal.sqlite3",
            "secret": var / "secret_key",
            "code": code_dir / "portal" / "settings.py",
            "postgres socket": Path("/var/run/postgresql/.s.PGSQL.5432"),
            "run": Path("/run/jupyter-portal-accounts.lock"),
        }.items()
    }
    as_a = as_uid(
        200_000 + A,
        f"import os\ntry:\n    os.listdir({str(var)!r})\n"
        "except OSError as e:\n    print(type(e).__name__)",
    )

    assert set(seen.values()) == {"FileNotFoundError"}, seen
    assert as_a.stdout.strip() == "PermissionError"


def test_a_cannot_connect_to_the_portal_services(
    pair: tuple[World, LiveSession, LiveSession],
) -> None:
    _, a, _ = pair
    results = {
        port: a.value(f"probe(lambda: socket.create_connection(('127.0.0.1', {port}), 5))")
        for port in (5432, 6379)
    }
    # The host's loopback answers root (the filter is what stops A).
    with socket.create_connection(("127.0.0.1", 5432), 5):
        pass

    assert results == {5432: "ConnectionRefusedError", 6379: "ConnectionRefusedError"}


def test_a_cannot_reach_this_machines_udp_services_by_broadcast_or_multicast(
    pair: tuple[World, LiveSession, LiveSession],
) -> None:
    _, a, _ = pair
    # Given a UDP service of this machine on every address (as root; not in A's range)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as service:
        service.bind(("0.0.0.0", 0))
        port = service.getsockname()[1]
        service.settimeout(2)
        send = textwrap.dedent(
            f"""
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            for dest in ("255.255.255.255", "224.0.0.1"):
                try:
                    s.sendto(b"from-a", (dest, {port}))
                except OSError:
                    pass
            """
        )
        # which a broadcast from outside the sessions' range does reach
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as root:
            root.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            root.sendto(b"from-root", ("255.255.255.255", port))
        assert service.recvfrom(64)[0] == b"from-root"

        # When A's kernel sends to the broadcast and the all-hosts multicast address
        a.run(send)

        # then nothing arrives
        with pytest.raises(TimeoutError):
            service.recvfrom(64)


@dataclass
class Remote:
    """A host out there: a network namespace with a TLS server on 443 and something on 22."""

    address: str
    ca_pem: str


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Remote]:
    suffix = os.getpid() % 200 + 20
    namespace, host_if, ns_if = f"jlp-t{suffix}", f"jlpt{suffix}a", f"jlpt{suffix}b"
    host_ip, ns_ip = f"198.18.{suffix}.1", f"198.18.{suffix}.2"
    run = lambda *args: subprocess.run(args, check=True, capture_output=True)  # noqa: E731
    subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={ns_ip}", "-addext", f"subjectAltName=IP:{ns_ip}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_code = textwrap.dedent(
        f"""
        import socket, ssl, threading
        from http.server import BaseHTTPRequestHandler, HTTPServer

        class Hello(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b"data download")
            def log_message(self, *args):
                pass

        ssh = socket.create_server(("{ns_ip}", 22))
        def serve_ssh():
            while True:
                client, _ = ssh.accept(); client.sendall(b"SSH-2.0-test\\r\\n"); client.close()
        threading.Thread(target=serve_ssh, daemon=True).start()
        httpd = HTTPServer(("{ns_ip}", 443), Hello)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain("{cert}", "{key}")
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        httpd.serve_forever()
        """
    )
    server = None
    try:
        run("ip", "netns", "add", namespace)
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        run("ip", "link", "set", ns_if, "netns", namespace)
        run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "netns", "exec", namespace, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        run("ip", "netns", "exec", namespace, "ip", "link", "set", ns_if, "up")
        run("ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", server_code]
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((ns_ip, 443), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield Remote(ns_ip, cert.read_text())
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


def test_https_egress_works_and_ssh_is_refused(world: World, remote: Remote) -> None:
    a = world.start(A)
    a.run(PROBE)
    https = a.run(
        "import ssl, urllib.request\n"
        f"context = ssl.create_default_context(cadata={remote.ca_pem!r})\n"
        f"print(urllib.request.urlopen('https://{remote.address}/', context=context, timeout=10)"
        ".read().decode())"
    )
    ssh = a.value(f"probe(lambda: socket.create_connection(('{remote.address}', 22), 5))")
    # Port 22 answers root: A's refusal is the packet filter's doing.
    with socket.create_connection((remote.address, 22), 5) as conn:
        banner = conn.recv(100)

    assert (https.status, https.stdout.strip()) == ("ok", "data download"), https
    assert ssh == "ConnectionRefusedError"
    assert banner.startswith(b"SSH-2.0")


def test_the_library_is_read_only_and_a_planted_link_binds_nothing(
    world: World, tmp_path: Path
) -> None:
    secret = tmp_path / "portal-var"
    secret.mkdir(mode=0o700)
    (secret / "secret_key").write_text("portal secret")
    # A's library, as storage_app clones it: root's, read-only, in the home.
    request = world.request(A)
    library = request.home_dir / "notebooks-library"
    library.mkdir(parents=True)
    (library / "intro.ipynb").write_text("{}")
    a = world.start(A, library_dir=library)
    a.run(PROBE)
    writes = a.value(
        f"[probe(lambda: open({str(library / 'intro.ipynb')!r}, 'w')),"
        f" probe(lambda: os.rename({str(library)!r}, {str(library)!r} + '.x'))]"
    )
    read = a.value(f"open({str(library / 'intro.ipynb')!r}).read()")
    renamed = a.value(f"probe(lambda: os.rename({str(library)!r}, 'old'))")
    world.spawner.stop(a.state)
    # Say A got a link to the portal's secrets in its place anyway (the mount above keeps
    # her from doing it in a session): the next session must not bind what it points to.
    shutil.rmtree(library)
    os.symlink(secret, library)
    os.lchown(library, 200_000 + A, 200_000 + A)
    a2 = world.start(A, library_dir=library)
    a2.run(PROBE)
    through_link = a2.value(f"probe(lambda: open({str(library / 'secret_key')!r}).read())")

    assert writes == "['OSError', 'OSError']", writes  # EROFS and EBUSY: a read-only mount
    assert read == "{}"
    assert renamed == "OSError"  # EBUSY: a mount point
    assert through_link == "FileNotFoundError"


def test_stop_leaves_nothing_of_the_session(world: World) -> None:
    a = world.start(A)
    a.run(
        "import subprocess\n"
        "subprocess.run(['sh', '-c', 'setsid sh -c \"sleep 600 & sleep 600\" >/dev/null 2>&1 &'])"
    )
    session_id, uid = a.request.session_id, 200_000 + A
    cgroup = limits.session_cgroup(session_id)
    assert cgroup is not None and len(cgroup.pids()) >= 5

    world.spawner.stop(a.state)

    left = [
        pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
        if _uid_of(pid) == uid
    ]  # fmt: skip
    assert left == []
    assert not any(path.exists() for path in cgroup.dirs)
    assert not Path(a.state["socket"]).parent.exists()
    assert world.spawner.poll(a.state).status == ServerStatus.GONE
    assert session_id not in {s.session_id for s in world.spawner.list_servers()}


def _uid_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def test_packet_filter_chain_is_installed_and_status_says_so(world: World) -> None:
    world.start(A, wait=False)
    rules = subprocess.run(["iptables", "-S", CHAIN], capture_output=True, text=True, check=True)
    report = status(IsolationConfig(mode="required"))

    assert "--dst-type LOCAL" in rules.stdout and "--dport 22" in rules.stdout
    assert {k: report[k] for k in ("mode", "accounts", "sandbox", "packet_filter", "ok")} == {
        "mode": "multi-user", "accounts": True, "sandbox": True, "packet_filter": True, "ok": True,
    }  # fmt: skip
    assert report["limits"] in ("cgroup v1", "cgroup v2")
