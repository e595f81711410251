"""What the security review of the Kubernetes back-end asked for: no route a username can take
from another, egress kept off the cluster's networks and the clouds' metadata, an allow-list that
cannot open everything, credentials of the library's URL kept out of what users read."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client import ApiClient

from sessions_app.spawners.base import SpawnRequest, route_name
from sessions_app.spawners.kube_objects import (
    METADATA_CIDRS,
    KubeConfig,
    make_network_policy,
    make_pod,
    parse_cidrs,
)


def test_safe_usernames_are_their_own_route() -> None:
    assert route_name("alice") == "alice"
    assert route_name("Bob_2") == "Bob_2"


def test_a_username_cannot_take_the_route_of_a_hashed_one() -> None:
    hashed = route_name("alice.smith@example.org")

    assert hashed.startswith("alice-smith-example-org-")
    assert route_name(hashed) != hashed  # chosen as a username, it is hashed again


@given(st.text(max_size=80), st.text(max_size=80))
def test_different_usernames_get_different_routes(first: str, second: str) -> None:
    if first != second:
        assert route_name(first) != route_name(second)


def _web_rule_excepts() -> set[str]:
    policy = ApiClient().sanitize_for_serialization(make_network_policy(KubeConfig()))
    [web] = [
        rule
        for rule in policy["spec"]["egress"]
        if {"port": 443, "protocol": "TCP"} in rule["ports"]
    ]
    return {cidr for peer in web["to"] for cidr in peer["ipBlock"].get("except", [])}


@pytest.mark.parametrize(
    "address",
    [
        "10.96.0.1",  # a typical kubernetes.default.svc
        "172.20.0.10",
        "192.168.1.1",
        "100.100.100.200",  # Alibaba's metadata
        "168.63.129.16",  # Azure's WireServer
        "169.254.169.254",
        "169.254.170.23",  # EKS Pod Identity
        "fd00:ec2::254",
        "fe80::1",
    ],
)
def test_web_egress_never_reaches_the_cluster_or_a_metadata_service(address: str) -> None:
    ip = ipaddress.ip_address(address)

    assert any(
        ip.version == ipaddress.ip_network(cidr).version and ip in ipaddress.ip_network(cidr)
        for cidr in _web_rule_excepts()
    )


def test_every_metadata_address_is_excepted() -> None:
    excepted = [ipaddress.ip_network(cidr) for cidr in _web_rule_excepts()]
    for metadata in METADATA_CIDRS:
        network = ipaddress.ip_network(metadata)
        assert any(
            network.version == other.version and network.subnet_of(other)  # type: ignore[arg-type]
            for other in excepted
        )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("0.0.0.0/0", "wider than"),
        ("::/0", "wider than"),
        ("169.254.0.0/16", "metadata address 169.254.169.254"),
        ("100.64.0.0/10", "metadata address 100.100.100.200"),
    ],
)
def test_the_allow_list_cannot_open_everything_or_the_metadata(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cidrs([entry])


def test_the_library_urls_credentials_stay_out_of_the_failure_note(tmp_path: Path) -> None:
    config = KubeConfig(library_url="https://deploy:s3cret@git.example.org/course/notebooks.git")
    request = SpawnRequest(
        session_id="s1",
        username="alice",
        memory_mb=1024,
        cpus=1,
        duration_seconds=60,
        home_dir=tmp_path / "u~1",
        backend_settings={"image": "example.org/session:1"},
    )

    pod = make_pod(config, request, "token")
    assert pod.spec is not None and pod.spec.init_containers
    [init] = pod.spec.init_containers
    command = init.command or []

    script, display = command[2], command[-1]
    assert display == "https://git.example.org/course/notebooks.git"
    assert "$3" in script.split("CLONE-FAILED")[0]
