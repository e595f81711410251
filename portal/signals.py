"""API tokens end with a suspension that a rule imposed.

A rule suspends an account for what was done with it (repeated quota violations, dodging the
cleanups), which may well have been done by a script with one of its tokens: the tokens are
revoked in the suspension's own transaction, and the owner makes new ones once reinstated.
A suspension by staff leaves them (a suspended account cannot use them anyway, and staff lift
it after an investigation).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.models.signals import post_save

from portal.tokens import RevokedBecause, tokens_revoke_all

log = logging.getLogger(__name__)


def revoke_tokens_on_rule_suspension(
    sender: Any, instance: Any, created: bool, **kwargs: Any
) -> None:
    if not created or not instance.rule:
        return
    revoked = tokens_revoke_all(instance.user, RevokedBecause.SUSPENDED)
    if revoked:
        log.info(
            "rule %s suspended user %s: %d API tokens revoked",
            instance.rule,
            instance.user_id,
            revoked,
        )


def connect() -> None:
    post_save.connect(
        revoke_tokens_on_rule_suspension,
        sender="suspension_app.Suspension",
        dispatch_uid="portal.revoke_tokens_on_rule_suspension",
    )
