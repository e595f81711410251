"""The staff API's permission check: the same model permissions as the admin's pages.

A staff member reads with the model's ``view`` permission (or ``change``, which includes it,
as in Django's admin) and acts with ``change``; superusers have them all. A staff member holding
one permission gets exactly what it says, whatever else the API offers.
"""

from __future__ import annotations

from typing import Any

from rest_framework import permissions, status
from rest_framework.request import Request

from portal.api_errors import ApiError


def permission_denied(needed: str) -> ApiError:
    return ApiError(
        status.HTTP_403_FORBIDDEN,
        f"You need the permission '{needed}' for this.",
        "permission_denied",
    )


class StaffMay(permissions.BasePermission):
    """``view`` (or ``change``) to read (GET, HEAD, OPTIONS), ``change`` for anything else.
    Subclasses name the two permissions (a read-only endpoint names ``change`` all the same: it
    lets its holders read, and its view answers other methods with 405). Put after
    ``IsAdminUser``: this checks permissions, not the staff flag."""

    view = ""
    change = ""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if request.method in permissions.SAFE_METHODS:
            allowed = user.has_perm(self.view) or user.has_perm(self.change)
            needed = self.view
        else:
            allowed = user.has_perm(self.change)
            needed = self.change
        if not allowed:
            raise permission_denied(needed)
        return True
