"""Which isolation the local back-end gives its sessions, and the status the admin shows.

Multi-user mode (the default when the portal runs as root, ``LOCAL_ISOLATION=auto``): an OS
account per person (:mod:`.os_accounts`), a bubblewrap sandbox per session (:mod:`.sandbox`), a
packet filter on the sessions' uids (:mod:`.netfilter`) and a cgroup per session
(:mod:`.limits`). Single-user mode (not root, or ``LOCAL_ISOLATION=off``): every session runs as
the portal's own user, limits where the machine allows them; fine for one person, not for two.
``LOCAL_ISOLATION=required`` refuses to start sessions without multi-user isolation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sessions_app.spawners import limits
from sessions_app.spawners.egress import DENIED_IPV4, DENIED_IPV6
from sessions_app.spawners.netfilter import netfilter_active, netfilter_problem
from sessions_app.spawners.sandbox import sandbox_problem

MODES = ("auto", "required", "off")
# The Kubernetes back-end's denied ranges: private, shared and link-local networks, with the
# clouds' metadata addresses in them.
DEFAULT_EGRESS_DENY = (*DENIED_IPV4, *DENIED_IPV6)


@dataclass(frozen=True)
class IsolationConfig:
    """The local back-end's isolation settings (``LOCAL_ISOLATION``, ``LOCAL_SESSION_*``)."""

    mode: str = "auto"
    account_prefix: str = "jlp-u"
    uid_min: int = 200_000
    uid_max: int = 299_999
    # The router's (nginx workers') group, which may open the sessions' sockets; None: root's.
    router_group: str | None = None
    pids_max: int = 512
    egress_deny_cidrs: tuple[str, ...] = DEFAULT_EGRESS_DENY

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(
                f"LOCAL_ISOLATION must be one of {', '.join(MODES)}, not {self.mode!r}"
            )
        if not 0 < self.uid_min < self.uid_max:
            raise ValueError(
                "LOCAL_SESSION_UID_MIN must be positive and below LOCAL_SESSION_UID_MAX"
            )


def multi_user_problem() -> str:
    """Why multi-user isolation is not possible here ("" when it is), whatever the mode."""
    if os.geteuid() != 0:
        return "the portal does not run as root, so it cannot switch users"
    return sandbox_problem() or netfilter_problem()


def refusal(config: IsolationConfig) -> str:
    """Why no session may start under ``config`` here ("" when they may).

    ``required`` without isolation refuses; so does ``auto`` when the portal runs as root but a
    tool of the isolation is missing: people's code would run as root, unsandboxed. Only
    ``LOCAL_ISOLATION=off`` accepts that risk. ``auto`` as an ordinary user is single-user mode.
    """
    if config.mode == "off":
        return ""
    problem = multi_user_problem()
    if not problem:
        return ""
    if config.mode == "required":
        return f"LOCAL_ISOLATION=required, but {problem}"
    if os.geteuid() == 0:
        return (
            f"the portal runs as root but cannot isolate sessions ({problem}); install what "
            "is missing, or set LOCAL_ISOLATION=off to accept that every session runs as root"
        )
    return ""


def multi_user(config: IsolationConfig) -> bool:
    """Whether sessions get multi-user isolation under ``config`` on this machine."""
    return config.mode != "off" and not multi_user_problem()


def status(config: IsolationConfig, check_filter: bool = True) -> dict[str, Any]:
    """What is in force, for the admin index and ``/readyz`` (see :func:`isolation_status`)."""
    problem = multi_user_problem()
    isolated = config.mode != "off" and not problem
    if config.mode == "off":
        why = "LOCAL_ISOLATION=off"
    else:
        why = problem
    return {
        "mode": "multi-user" if isolated else "single-user",
        "setting": config.mode,
        "accounts": isolated,
        "sandbox": isolated,
        "packet_filter": isolated
        and (not check_filter or netfilter_active(config.uid_min, config.uid_max)),
        "limits": limits.enforcement(),
        # False when sessions are refused (see refusal()).
        "ok": not refusal(config),
        "reason": "" if isolated else why,
        "summary": (
            "multi-user mode: each person's sessions run as their own OS account, sandboxed"
            if isolated
            else "single-user mode: every session runs as the portal's user"
            + (f" ({why})" if why else "")
        ),
    }


def isolation_status(check_filter: bool = True) -> dict[str, Any]:
    """The local back-end's isolation under the current settings.

    Keys: ``mode`` ("multi-user" | "single-user"), ``setting`` (LOCAL_ISOLATION), ``accounts``,
    ``sandbox``, ``packet_filter`` (bools; the filter is checked live unless ``check_filter``
    is False; it is installed at the first launch), ``limits`` ("cgroup v2" | "cgroup v1" |
    "rlimits"), ``ok`` (False: LOCAL_ISOLATION=required and isolation is missing), ``reason``
    (why not multi-user, "" if it is) and ``summary`` (one sentence for people).
    """
    return status(config_from_settings(), check_filter=check_filter)


def config_from_settings() -> IsolationConfig:
    from django.conf import settings

    return IsolationConfig(
        mode=settings.LOCAL_ISOLATION,
        account_prefix=settings.LOCAL_SESSION_ACCOUNT_PREFIX,
        uid_min=settings.LOCAL_SESSION_UID_MIN,
        uid_max=settings.LOCAL_SESSION_UID_MAX,
        router_group=settings.LOCAL_ROUTER_GROUP or None,
        pids_max=settings.LOCAL_SESSION_PIDS_MAX,
        egress_deny_cidrs=tuple(settings.LOCAL_SESSION_EGRESS_DENY_CIDRS) or DEFAULT_EGRESS_DENY,
    )


def isolation_prepare() -> dict[str, Any]:
    """What a worker does at start in multi-user mode: install the packet filter (it is also
    installed at each worker's first launch). Returns :func:`isolation_status`; a filter that
    cannot be installed is in it as ``packet_filter`` False and the ``reason``."""
    from sessions_app.spawners.base import SpawnerError
    from sessions_app.spawners.netfilter import netfilter_install

    config = config_from_settings()
    reason = ""
    if multi_user(config):
        try:
            netfilter_install(config.uid_min, config.uid_max, config.egress_deny_cidrs)
        except SpawnerError as exc:
            reason = str(exc)
    report = status(config)
    if reason:
        report["reason"] = reason
    return report
