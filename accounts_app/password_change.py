"""A changed password revokes the account's API tokens.

Django calls ``password_changed`` on every entry of ``AUTH_PASSWORD_VALIDATORS`` when a user is
saved after ``set_password()`` (the admin's password form, ``changepassword``), and not when it
only re-hashes the same password at sign-in (a hasher upgrade): exactly the changes that should
end the tokens someone made with the old password. Other browser sessions end by themselves
(Django's session hash of the password).
"""

from __future__ import annotations

import logging
from typing import Any

from portal.tokens import RevokedBecause, tokens_revoke_all

log = logging.getLogger(__name__)


class RevokeApiTokensOnPasswordChange:
    """An entry of ``AUTH_PASSWORD_VALIDATORS`` that accepts every password."""

    def validate(self, password: str, user: Any = None) -> None:
        return None

    def password_changed(self, password: str, user: Any = None) -> None:
        if user is None or user.pk is None:
            return
        revoked = tokens_revoke_all(user, RevokedBecause.PASSWORD_CHANGED)
        if revoked:
            log.info("password of %s changed: %d API tokens revoked", user.get_username(), revoked)

    def get_help_text(self) -> str:
        return "A new password revokes the account's API tokens."
