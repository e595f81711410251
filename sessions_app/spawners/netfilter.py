"""The packet filter on the sessions' uids (multi-user mode): no reach into the portal's services.

Sessions share the machine's network (HTTPS to the internet must work for data downloads), so
what they may connect to is decided by an iptables chain (and its ip6tables twin) that every
packet a process of the sessions' uid range sends passes through (``OUTPUT -m owner
--uid-owner MIN-MAX -j JLP-SESSIONS``):

1. packets of connections already made (and their ICMP errors) pass;
2. DNS to the resolvers of ``/etc/resolv.conf`` passes (often a private or loopback address);
3. TCP port 22 is refused, wherever it goes (no SSH out, as on Kubernetes);
4. every address of this machine (``--dst-type LOCAL``: loopback and the host's own addresses)
   is refused: the database, the broker, the portal, other sessions; so is every destination
   that is not unicast (broadcast and multicast reach the machine's own UDP services too);
5. private, shared and link-local ranges (cloud metadata) are refused
   (``LOCAL_SESSION_EGRESS_DENY_CIDRS``, by default those of the Kubernetes back-end);
6. the rest passes.

"Refused" is an ICMP port-unreachable (a TCP reset for TCP): the program fails at once with
"connection refused" instead of hanging. The chain is flushed and rebuilt in one
``iptables-restore --noflush`` transaction (no moment without rules), under a lock, at the
first launch of each worker process; the jump from OUTPUT is added once.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from sessions_app.spawners.base import SpawnerError
from sessions_app.spawners.processes import run_checked

logger = logging.getLogger(__name__)

CHAIN = "JLP-SESSIONS"
RESOLV_CONF = Path("/etc/resolv.conf")
_LOCK_PATH = Path("/run/jupyter-portal-netfilter.lock")
_TIMEOUT_SECONDS = 30
_installed: set[tuple[object, ...]] = set()
_installed_lock = threading.Lock()


def _family_of(cidr: str) -> int:
    return ipaddress.ip_network(cidr, strict=False).version


def chain_rules(deny_cidrs: tuple[str, ...], resolvers: tuple[str, ...], version: int) -> list[str]:
    """The chain's rules for IPv4 (``version`` 4) or IPv6, in ``iptables-restore`` syntax."""
    reject = "icmp-port-unreachable" if version == 4 else "icmp6-port-unreachable"
    rules = [f"-A {CHAIN} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]
    for resolver in resolvers:
        if ipaddress.ip_address(resolver).version == version:
            for proto in ("udp", "tcp"):
                rules.append(f"-A {CHAIN} -d {resolver} -p {proto} --dport 53 -j ACCEPT")
    rules += [
        f"-A {CHAIN} -p tcp --dport 22 -j REJECT --reject-with tcp-reset",
        f"-A {CHAIN} -m addrtype --dst-type LOCAL -p tcp -j REJECT --reject-with tcp-reset",
        f"-A {CHAIN} -m addrtype --dst-type LOCAL -j REJECT --reject-with {reject}",
        # Broadcast, multicast and anycast are not LOCAL, yet reach this machine's services
        # (a UDP listener on 0.0.0.0 answers a subnet broadcast): only unicast goes out.
        f"-A {CHAIN} -m addrtype ! --dst-type UNICAST -j REJECT --reject-with {reject}",
    ]
    for cidr in deny_cidrs:
        if _family_of(cidr) == version:
            net = ipaddress.ip_network(cidr, strict=False)
            rules.append(f"-A {CHAIN} -d {net} -p tcp -j REJECT --reject-with tcp-reset")
            rules.append(f"-A {CHAIN} -d {net} -j REJECT --reject-with {reject}")
    rules.append(f"-A {CHAIN} -j RETURN")
    return rules


def resolvers(path: Path = RESOLV_CONF) -> tuple[str, ...]:
    """The name servers of ``resolv.conf`` (sessions need DNS, wherever the resolver is)."""
    found = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    found.append(str(ipaddress.ip_address(fields[1].split("%")[0])))
    return tuple(dict.fromkeys(found))


def netfilter_problem() -> str:
    """Why the filter cannot be installed here ("" when it can)."""
    if os.geteuid() != 0:
        return "the portal does not run as root"
    for program in ("iptables-restore", "ip6tables-restore", "iptables", "ip6tables"):
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install iptables)"
    return ""


def netfilter_install(uid_min: int, uid_max: int, deny_cidrs: tuple[str, ...]) -> None:
    """Install (or rebuild) the chain and the jump to it; once per process and settings."""
    key = (uid_min, uid_max, deny_cidrs)
    with _installed_lock:
        if key in _installed:
            return
        problem = netfilter_problem()
        if problem:
            raise SpawnerError(f"Cannot install the sessions' packet filter: {problem}.")
        names = resolvers()
        with _machine_lock():
            for version, tool in ((4, "iptables"), (6, "ip6tables")):
                rules = chain_rules(deny_cidrs, names, version)
                script = "\n".join(
                    ["*filter", f":{CHAIN} - [0:0]", f"-F {CHAIN}", *rules, "COMMIT", ""]
                )
                _run([f"{tool}-restore", "--noflush", "--wait"], script)
                jump = ["OUTPUT", "-m", "owner", "--uid-owner", f"{uid_min}-{uid_max}", "-j", CHAIN]
                if not _ok([tool, "--wait", "-C", *jump]):
                    _run([tool, "--wait", "-I", *jump[:1], "1", *jump[1:]])
        _installed.add(key)
    logger.info("Packet filter %s installed for uids %s-%s", CHAIN, uid_min, uid_max)


def netfilter_active(uid_min: int, uid_max: int) -> bool:
    """Whether the jump to the chain is in place for both IP versions (a live check)."""
    if netfilter_problem():
        return False
    jump = ["OUTPUT", "-m", "owner", "--uid-owner", f"{uid_min}-{uid_max}", "-j", CHAIN]
    return all(_ok([tool, "--wait", "-C", *jump]) for tool in ("iptables", "ip6tables"))


def netfilter_remove(uid_min: int, uid_max: int) -> None:
    """Remove the jump and the chain (tests, and an operator turning isolation off)."""
    jump = ["OUTPUT", "-m", "owner", "--uid-owner", f"{uid_min}-{uid_max}", "-j", CHAIN]
    with _installed_lock, _machine_lock():
        for tool in ("iptables", "ip6tables"):
            while _ok([tool, "--wait", "-D", *jump]):
                pass
            _ok([tool, "--wait", "-F", CHAIN])
            _ok([tool, "--wait", "-X", CHAIN])
        _installed.clear()


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    # Two workers starting at once must not both insert the jump.
    fd = os.open(_LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _run(command: list[str], stdin: str = "") -> None:
    run_checked(command, _TIMEOUT_SECONDS, stdin)


def _ok(command: list[str]) -> bool:
    try:
        return (
            subprocess.run(
                command, capture_output=True, timeout=_TIMEOUT_SECONDS, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False
