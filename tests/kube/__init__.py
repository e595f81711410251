"""A fake Kubernetes API server (``FakeApiServer``) and node (``Kubelet``) for the tests.

The fixtures are in ``tests.kube.fixtures``; list it in ``pytest_plugins`` to use them elsewhere.
"""
