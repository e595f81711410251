"""Fixtures of the real local sessions (local_world.py), for every test module here."""

from tests.sessions_app.local_world import isolation_config, socket_root, world

__all__ = ["isolation_config", "socket_root", "world"]  # fixtures
