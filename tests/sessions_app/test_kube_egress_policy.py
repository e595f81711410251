"""The sessions' egress on Kubernetes stays off the cluster's networks and the clouds' metadata
services, and the allow-list cannot open everything or the metadata."""

from __future__ import annotations

import ipaddress

import pytest
from kubernetes.client import ApiClient

from sessions_app.spawners.kube_network import make_network_policy
from sessions_app.spawners.kube_objects import (
    METADATA_CIDRS,
    KubeConfig,
    parse_cidrs,
)


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
