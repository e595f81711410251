"""The Kubernetes versions the manifests under ``deploy/`` are validated against.

One list for the manifests and the session objects (tests/kube_checks.py imports it): from
1.30 to 1.37, the newest that kubernetes-validate (requirements-dev.txt) has schemas for; add a
version when it gains one. Everything the manifests use is on by default throughout: the
PodDisruptionBudgets' ``unhealthyPodEvictionPolicy`` and the topology spread's
``matchLabelKeys`` since 1.27, Pod Security Admission, policy/v1 budgets and
networking.k8s.io/v1 Ingresses for longer. The README lists the same range.
"""

from __future__ import annotations

SUPPORTED_KUBERNETES_VERSIONS: tuple[str, ...] = (
    "1.30",
    "1.31",
    "1.32",
    "1.33",
    "1.34",
    "1.35",
    "1.36",
    "1.37",
)
