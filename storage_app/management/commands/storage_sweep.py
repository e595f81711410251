"""``manage.py storage_sweep [--dry-run] [--user USERNAME]``: one storage pass, now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from storage_app.lease import StorageBusy
from storage_app.sweep import UnknownUser, storage_sweep


class Command(BaseCommand):
    help = (
        "Run one full storage pass now: measure every user's storage, enforce the scratch "
        "quotas, warn about and delete unused private storage, enforce the shared scratch "
        "maximum. Prints what it did, or with --dry-run what it would do."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Decide as a real pass would, but remove, mail and report nothing (only the "
            "dry run itself is recorded, as a cleanup run marked dry).",
        )
        parser.add_argument(
            "--user",
            metavar="USERNAME",
            help="Only this user (the shared scratch maximum, which is about all users, is "
            "not checked).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = storage_sweep(dry_run=options["dry_run"], username=options["user"])
        except UnknownUser as exc:
            raise CommandError(f"{exc} Give the username as it appears in the admin.") from None
        except StorageBusy as exc:
            raise CommandError(str(exc)) from None
        for line in report.lines():
            self.stdout.write(line)
        if report.failures:
            self.stderr.write("Failed for: " + ", ".join(user.username for user in report.failures))
