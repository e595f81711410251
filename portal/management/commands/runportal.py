"""Run the whole portal on one machine: migrations, then web, Celery worker and beat."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = (
        "Start the portal (web, Celery worker and beat) on this machine, on the configured "
        "database and broker; creates a first staff account if there is no user yet."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("PORTAL_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORTAL_PORT", "8000")))
        parser.add_argument(
            "--web-threads",
            type=int,
            default=int(os.environ.get("WEB_THREADS", "8")),
            help="Threads of each of the two web processes.",
        )
        parser.add_argument(
            "--worker-concurrency",
            type=int,
            default=int(os.environ.get("WORKER_CONCURRENCY", "16")),
            help="Worker threads; a spawn task waits on a server start, so keep this above "
            "the number of simultaneous launches you expect.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        login = self._first_account()
        python = sys.executable
        address = f"{options['host']}:{options['port']}"
        commands = {
            # gunicorn rather than runserver: threads for long-polling clients, and no 40 ms
            # Nagle/delayed-ACK stall on keep-alive answers.
            "web": [
                python, "-m", "gunicorn", "portal.wsgi:application", "--bind", address,
                "--worker-class", "gthread", "--workers", "2",
                "--threads", str(options["web_threads"]), "--access-logfile", "-",
                # gunicorn 27's control socket has one fixed path per machine user: a second
                # portal (or a test) would take it over.
                "--no-control-socket",
            ],
            "worker": [
                python, "-m", "celery", "-A", "portal", "worker", "--pool", "threads",
                "--concurrency", str(options["worker_concurrency"]), "--loglevel", "INFO",
            ],
            "beat": [
                python, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO",
                "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ],
        }  # fmt: skip
        children = {
            name: subprocess.Popen(command, cwd=settings.BASE_DIR)
            for name, command in commands.items()
        }
        self.stdout.write(
            self.style.SUCCESS(f"\nThe portal runs at http://{address}/\n")
            + f"{login}\nAdmin: http://{address}/admin/   Stop with Ctrl+C.\n"
        )
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            while all(child.poll() is None for child in children.values()):
                time.sleep(0.5)
            dead = [name for name, child in children.items() if child.poll() is not None]
            self.stderr.write(f"{', '.join(dead)} stopped; shutting the portal down.")
        except KeyboardInterrupt:
            pass
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
            for child in children.values():
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()

    def _first_account(self) -> str:
        """Create a staff account on a new installation and say how to log in."""
        user_model = get_user_model()
        password_file = Path(settings.VAR_DIR) / "admin-password"
        if not user_model.objects.exists():
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser("admin", "admin@localhost", password)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        if password_file.exists():
            password = password_file.read_text().strip()
            return (
                f"Log in as 'admin' with password '{password}' (kept in {password_file}).\n"
                "The first sign-in sets up a second factor: scan the QR code with an "
                "authenticator app\n(or type its key; without an app: oathtool --totp -b KEY)."
            )
        return "Log in with your account (create one with: manage.py createsuperuser)."
