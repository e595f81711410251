"""The one error type of the services: a refusal that people read and programs match.

Each app subclasses :class:`ServiceError` once (``LaunchError``, ``QueueError``,
``StaffStopError``, ``SuspensionError``, ``TermsError``, ``SecondFactorError``) and names the
HTTP status of each code that is not a 400 in ``statuses``. The API answers every one of them in
one place, :func:`portal.api_errors.exception_handler`: ``{"detail", "code"}`` with ``status``
(and ``Retry-After`` when ``retry_after`` is set), so an endpoint just lets it rise. Pages and
the admin show ``str(error)``, the detail.
"""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """A service call that is refused.

    ``detail``: for people; ``code``: stable, for programs; ``status``: what the API answers,
    by default the subclass's ``statuses[code]``, else 400; ``retry_after``: seconds after which
    the same call may succeed (None: it will not by waiting).
    """

    #: The API status of the codes that are not a 400 (a subclass's own).
    statuses: ClassVar[dict[str, int]] = {}

    def __init__(
        self,
        detail: str,
        code: str,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.status = status if status is not None else self.statuses.get(code, 400)
        self.retry_after = retry_after
