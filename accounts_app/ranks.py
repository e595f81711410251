"""Who may act on whose account: staff never act on an account that holds more than they do
(a superuser's above all), nor grant a permission they lack. The admin's user and group forms
and the suspensions (admin and API) ask the same two questions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Permission


def _label(permission: Permission) -> str:
    return f"{permission.content_type.app_label}.{permission.codename}"


def permissions_not_held(editor: Any, permissions: Iterable[Permission]) -> list[str]:
    """The permissions among ``permissions`` that ``editor`` does not hold (none for a
    superuser), as ``app_label.codename``."""
    if editor.is_superuser:
        return []
    return sorted({_label(p) for p in permissions} - editor.get_all_permissions())


def outranks(account: Any, editor: Any) -> bool:
    """Whether ``account`` holds something ``editor`` does not: then ``editor`` leaves it alone."""
    if editor.is_superuser:
        return False
    return bool(
        account.is_superuser or account.get_all_permissions() - editor.get_all_permissions()
    )
