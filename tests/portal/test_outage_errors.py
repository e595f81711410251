"""Which errors are an outage (portal/outage.py): the drivers' "does not answer", wrapped or
not — and nothing that code chose to answer otherwise."""

from __future__ import annotations

import django.db
import kombu.exceptions
import psycopg
import pytest
import redis.exceptions
from psycopg_pool import PoolTimeout

from portal.api_errors import ApiError
from portal.outage import is_outage


def _raised_from(cause: BaseException, exc: BaseException) -> BaseException:
    try:
        raise exc from cause
    except BaseException as raised:  # noqa: BLE001 - the test builds the chain
        return raised


def _raised_while_handling(first: BaseException, exc: BaseException) -> BaseException:
    try:
        try:
            raise first
        except BaseException:  # noqa: BLE001
            raise exc  # noqa: B904 - the point: raised while handling, not from
    except BaseException as raised:  # noqa: BLE001
        return raised


@pytest.mark.parametrize(
    "exc",
    [
        django.db.OperationalError("server closed the connection unexpectedly"),
        django.db.InterfaceError("connection already closed"),
        # Django's wrapper of the pool's timeout, as the back-end raises it
        _raised_from(PoolTimeout("couldn't get a connection"), django.db.OperationalError("x")),
        psycopg.OperationalError("consuming input failed"),
        redis.exceptions.ConnectionError("Connection refused"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379"),
        _raised_from(redis.exceptions.ConnectionError("reset"), RuntimeError("wrapped")),
    ],
)
def test_an_unanswered_database_cache_or_broker_is_an_outage(exc: BaseException) -> None:
    assert is_outage(exc)


@pytest.mark.parametrize(
    "exc",
    [
        None,
        django.db.IntegrityError("duplicate key"),
        django.db.ProgrammingError("relation does not exist"),
        ValueError("a bug"),
        ApiError(409, "Someone else got there first.", "conflict"),
        # code that met an outage and answered something else of its own
        _raised_while_handling(django.db.OperationalError("x"), ValueError("another answer")),
    ],
)
def test_other_errors_are_not(exc: BaseException | None) -> None:
    assert not is_outage(exc)
