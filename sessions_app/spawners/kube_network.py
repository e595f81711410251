"""What a session pod may reach, and who may reach it: the namespace's one NetworkPolicy.

Built by a pure function, as the other objects (:mod:`.kube_objects`); the addresses it keeps
out are :mod:`.egress`'s, the allow-list is ``KubeConfig.egress_allow_cidrs``
(``kube_objects.parse_cidrs`` refuses wide networks and the metadata addresses).
"""

from __future__ import annotations

from kubernetes.client import (
    V1IPBlock,
    V1LabelSelector,
    V1NetworkPolicy,
    V1NetworkPolicyEgressRule,
    V1NetworkPolicyIngressRule,
    V1NetworkPolicyPeer,
    V1NetworkPolicyPort,
    V1NetworkPolicySpec,
    V1ObjectMeta,
)

from sessions_app.spawners.egress import DENIED_IPV4, DENIED_IPV6
from sessions_app.spawners.kube_objects import (
    NETWORK_POLICY_NAME,
    PART_OF,
    SERVER_PORT,
    SESSION_SELECTOR,
    KubeConfig,
)


def make_network_policy(config: KubeConfig) -> V1NetworkPolicy:
    """What every session pod may reach, and who may reach it.

    Out: DNS (the cluster's resolver only) and TCP 80/443 anywhere but the cloud metadata
    address, plus the configured allow-list (any port); so no SSH, no other protocol. In: only
    the ingress controller's pods, on the server's port.
    """
    web_ports = [V1NetworkPolicyPort(protocol="TCP", port=port) for port in (80, 443)]
    anywhere = [
        V1NetworkPolicyPeer(ip_block=V1IPBlock(cidr="0.0.0.0/0", _except=list(DENIED_IPV4))),
        V1NetworkPolicyPeer(ip_block=V1IPBlock(cidr="::/0", _except=list(DENIED_IPV6))),
    ]
    dns = V1NetworkPolicyEgressRule(
        to=[
            V1NetworkPolicyPeer(
                namespace_selector=V1LabelSelector(
                    match_labels={"kubernetes.io/metadata.name": "kube-system"}
                ),
                pod_selector=V1LabelSelector(match_labels={"k8s-app": "kube-dns"}),
            )
        ],
        ports=[V1NetworkPolicyPort(protocol=proto, port=53) for proto in ("UDP", "TCP")],
    )
    egress = [dns, V1NetworkPolicyEgressRule(to=anywhere, ports=web_ports)]
    if config.egress_allow_cidrs:
        egress.append(
            V1NetworkPolicyEgressRule(
                to=[
                    V1NetworkPolicyPeer(ip_block=V1IPBlock(cidr=cidr))
                    for cidr in config.egress_allow_cidrs
                ]
            )
        )
    return V1NetworkPolicy(
        api_version="networking.k8s.io/v1",
        kind="NetworkPolicy",
        metadata=V1ObjectMeta(
            name=NETWORK_POLICY_NAME,
            namespace=config.namespace,
            labels={"app.kubernetes.io/managed-by": PART_OF, "app.kubernetes.io/part-of": PART_OF},
        ),
        spec=V1NetworkPolicySpec(
            pod_selector=V1LabelSelector(match_labels=dict(SESSION_SELECTOR)),
            policy_types=["Ingress", "Egress"],
            ingress=[
                V1NetworkPolicyIngressRule(
                    _from=[
                        V1NetworkPolicyPeer(
                            namespace_selector=V1LabelSelector(
                                match_labels={
                                    "kubernetes.io/metadata.name": config.router_namespace
                                }
                            ),
                            pod_selector=V1LabelSelector(
                                match_labels=dict(config.router_pod_labels)
                            ),
                        )
                    ],
                    ports=[V1NetworkPolicyPort(protocol="TCP", port=SERVER_PORT)],
                )
            ],
            egress=egress,
        ),
    )
