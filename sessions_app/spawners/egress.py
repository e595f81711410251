"""Where sessions may not connect, on both back-ends (the Kubernetes NetworkPolicy and the
local packet filter)."""

from __future__ import annotations

# Where sessions must not go on 80/443: the cluster's own networks (the API server, other
# tenants' services, nodes) and every cloud's instance metadata and agents (credentials live
# there: 169.254.169.254, AWS's fd00:ec2::254 and Pod Identity 169.254.170.23, Azure's
# WireServer 168.63.129.16, Alibaba's 100.100.100.200). Internal hosts sessions need (a git
# server) go on the allow-list.
DENIED_IPV4 = (
    "10.0.0.0/8",
    "100.64.0.0/10",
    "168.63.129.16/32",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
)
DENIED_IPV6 = ("fc00::/7", "fe80::/10")
METADATA_CIDRS = (
    "169.254.169.254/32",
    "fd00:ec2::254/128",
    "169.254.170.23/32",
    "100.100.100.200/32",
)
