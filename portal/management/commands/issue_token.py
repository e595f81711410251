from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts_app.second_factor import second_factor_confirmed
from portal.tokens import TokenLifetimeError, token_issue


class Command(BaseCommand):
    help = (
        "Print a new API bearer token for USERNAME (shown once; only a digest is stored). "
        "The user must have a second factor, unless --force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="issued by issue_token")
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="How long the token lives (default API_TOKEN_DAYS, at most API_TOKEN_MAX_DAYS).",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Issue it even though the user never set up a second factor.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: options["username"]})
        except user_model.DoesNotExist:
            raise CommandError(f"No user named {options['username']!r}.") from None
        if not second_factor_confirmed(user):
            if not options["force"]:
                # A token is as good as a password and a second factor: without one, whoever
                # knows the password could have made it.
                raise CommandError(
                    f"{options['username']!r} has no second factor yet (they set one up at "
                    "their first sign-in): use --force to issue a token all the same."
                )
            self.stderr.write(
                self.style.WARNING(
                    f"Warning: {options['username']!r} has no second factor; issuing a token "
                    "anyway (--force)."
                )
            )
        try:
            raw = token_issue(user=user, name=options["name"], days=options["days"])
        except TokenLifetimeError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(raw)
