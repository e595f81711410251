"""Run the whole portal on one machine: migrations, then its processes under a supervisor.

The processes (``children`` below, a plain dict name -> Child, started in that order): the
embedded broker (a redis-server on a Unix socket in var/, when CELERY_BROKER_URL is unset), the
web server, a Celery worker per queue (worker-control, worker-spawn, worker-storage: settings,
"Celery") and beat. One that dies is restarted with back-off
(portal/supervisor.py); the portal stops only on Ctrl+C or SIGTERM, and then stops them all.

The terminal shows the banner (the address, the first sign-in, how to admit a person, where the
logs are) and errors only: each process writes to a file of its own in ``var/log/``
(``<name>.log``, and ``runportal.log`` for the supervisor's own lines), private like the rest of
``var/``. A process that dies is said on the terminal too, with the end of its log.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts_app.admin_access import GRANT
from accounts_app.policy import access_group
from portal.private_files import (
    make_private_dir,
    set_private_umask,
    tighten_var_dir,
    write_private_file,
)
from portal.router import router_child, web_socket_path
from portal.supervisor import Child, Supervisor
from sessions_app.spawners.isolation import isolation_status

logger = logging.getLogger("portal.supervisor")


def log_dir() -> Path:
    """Where runportal and each of its processes write their logs."""
    return Path(settings.VAR_DIR) / "log"


def redis_server_path() -> str:
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/bin")
    if not found:
        raise CommandError(
            "redis-server is not installed; the embedded broker needs it. `make run` installs "
            "it (apt-get install redis-server), or set CELERY_BROKER_URL to a broker of yours."
        )
    return found


def _answers_ping(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        sock.connect(str(path))
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


def embedded_broker(path: Path) -> Child:
    """A redis-server for the portal alone: no TCP port, a 0600 socket in a 0700 folder, and an
    append-only file there so that queued tasks (deadlines scheduled hours ahead) outlive a
    restart. Why Redis and not kombu's filesystem or SQLAlchemy transports: docs/benchmarks.md,
    "Broker"."""
    folder = path.parent
    command = [
        redis_server_path(), "--port", "0", "--unixsocket", str(path), "--unixsocketperm", "600",
        "--dir", str(folder), "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
        "--daemonize", "no", "--loglevel", "warning", "--logfile", "",
    ]  # fmt: skip
    return Child(
        command, prepare=lambda: make_private_dir(folder), ready=lambda: _answers_ping(path)
    )


def worker_queues() -> list[str]:
    """The Celery queues, one worker each."""
    return [queue.name for queue in settings.CELERY_TASK_QUEUES]


class Command(BaseCommand):
    help = (
        "Start the portal (web, a Celery worker per queue and beat, and the embedded broker when "
        "CELERY_BROKER_URL is unset) on this machine and keep it running: a process that dies "
        "is restarted. Creates a first staff account if there is no user yet."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("PORTAL_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORTAL_PORT", "8000")))
        parser.add_argument(
            "--web-threads",
            type=int,
            default=int(os.environ.get("WEB_THREADS", "8")),
            help="Threads of each of the two web processes for the sync views (the waiting "
            "views need none).",
        )
        for queue, threads in settings.WORKER_QUEUE_CONCURRENCY.items():
            parser.add_argument(
                f"--{queue}-concurrency",
                type=int,
                default=threads,
                help=f"Threads of the {queue} queue's worker (default: "
                f"WORKER_CONCURRENCY_{queue.upper()}, else {threads}).",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        # Before anything is written: the database, the secrets and the children's files.
        set_private_umask()
        for path in tighten_var_dir(Path(settings.VAR_DIR)):
            self.stderr.write(f"Made {path} private (it was readable by others).")
        logs = log_dir()
        make_private_dir(logs)
        self._log_to_files(logs / "runportal.log")
        isolation = self._isolation()
        call_command("migrate", interactive=False, verbosity=0)
        # A new installation has the group from a migration; this makes the one a changed
        # ACCESS_GROUP names, so that the admin's group filter and "Grant" find it at once.
        access_group()
        login = self._first_account()
        address = f"{options['host']}:{options['port']}"
        supervisor = Supervisor(self.children(options, address), cwd=settings.BASE_DIR)
        # Ctrl+C and SIGTERM only ask: the loop then stops the children in order, and a second
        # Ctrl+C cannot cut that short half-way.
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        signal.signal(signal.SIGINT, lambda signum, frame: stop.set())

        def banner() -> None:
            self.stdout.write(
                self.style.SUCCESS(f"\nThe portal runs at http://{address}/\n\n")
                + f"{login}\n\n{admit_help(address)}\n\n"
                + isolation
                + f"Logs: {logs}/ (a file per process: web.log, worker-spawn.log, ...).\n"
                + "Stop with Ctrl+C.\n"
            )
            self.stdout.flush()

        said: list[bool] = []

        def should_stop() -> bool:
            if stop.is_set() and not said:
                said.append(True)
                self.stdout.write("\nStopping the portal: each process in turn...")
            return stop.is_set()

        try:
            supervisor.run(should_stop, on_started=banner)
        finally:
            self.stdout.write("The portal has stopped.")

    def _isolation(self) -> str:
        """What isolates local sessions, said at start; refuse to start when sessions would run
        as root unsandboxed (or isolation is required and missing)."""
        if settings.SPAWNER != "local":
            return ""
        status = isolation_status(check_filter=False)
        if not status["ok"]:
            raise CommandError(f"Local sessions cannot be isolated: {status['reason']}.")
        if status["mode"] == "multi-user":
            return self.style.SUCCESS(
                f"Sessions: {status['summary']}; limits: {status['limits']}.\n"
            )
        return self.style.WARNING(
            "\n*** SINGLE-USER MODE: every session runs as you. ***\n"
            f"({status['reason']}.) Fine for one person; anyone else who can launch a session "
            "can read your files and the portal's data.\nRun as root for multi-user mode "
            "(see the README, 'One machine, many people').\n"
        )

    def children(self, options: dict[str, Any], address: str) -> dict[str, Child]:
        """The portal's processes, in start order (name -> Child)."""
        python = sys.executable
        children: dict[str, Child] = {}
        if settings.EMBEDDED_BROKER_SOCKET is not None:
            children["broker"] = embedded_broker(settings.EMBEDDED_BROKER_SOCKET)
        # The router (nginx, portal/router.py) serves the portal's address: the portal itself
        # and the sessions under /user/<name>/. First: it makes the folder of the web's socket.
        web = f"unix:{web_socket_path()}"
        router_command, router_prepare = router_child(options["host"], options["port"], web)
        children["router"] = Child(router_command, prepare=router_prepare)
        gunicorn = [
            # gunicorn with uvicorn's workers (docs/benchmarks.md, "Web reads"): an event loop
            # per process for the waiting views, which hold no thread, and portal/asgi.py's
            # pool of WEB_THREADS threads per process for every other view.
            python, "-m", "gunicorn", "portal.asgi:application", "--bind", web,
            # gunicorn gives the socket its own group, so it is made 0777: the router's folder
            # (root:www-data 2750, or the user's 0700) keeps everyone else out.
            "--umask", "0o000",
            "--worker-class", "uvicorn_worker.UvicornWorker", "--workers", "2",
            "--access-logfile", "-",
            # At a stop, requests under way get 10 s (a long poll, an event stream: their
            # clients ask again), within the supervisor's 15 s before it kills the web.
            "--graceful-timeout", "10",
            # gunicorn 27's control socket has one fixed path per machine user: a second
            # portal (or a test) would take it over.
            "--no-control-socket",
        ]  # fmt: skip
        # The router is one more proxy that appends the client's address to X-Forwarded-For.
        hops = {"TRUSTED_PROXY_HOPS": str(settings.TRUSTED_PROXY_HOPS + 1)}
        # Session URLs are on the router's address unless the public URL is set (a proxy of
        # the operator's in front): the worker writes them, the web shows them.
        public = (
            {} if "PORTAL_PUBLIC_URL" in os.environ else {"PORTAL_PUBLIC_URL": f"http://{address}"}
        )
        threads = {"WEB_THREADS": str(options["web_threads"])}
        # On PostgreSQL the web's connections come from a pool of its own: one for each thread
        # and a few for the waiting views' short reads (settings, DATABASE_POOL_SIZE).
        pool = {
            "DATABASE_POOL_SIZE": os.environ.get("DATABASE_POOL_SIZE")
            or str(options["web_threads"] + 4)
        }
        children["web"] = Child(gunicorn, env={**hops, **public, **threads, **pool})
        # One worker per queue, so that a stop never waits behind starts (settings, "Celery").
        # Threads: a task mostly waits (for a server, the back-end, the disk).
        for queue in worker_queues():
            children[f"worker-{queue}"] = Child(env=public, command=[
                python, "-m", "celery", "-A", "portal", "worker", "--pool", "threads",
                "-Q", queue, "-n", f"{queue}@%h",
                "--concurrency", str(options[f"{queue}_concurrency"]), "--loglevel", "INFO",
            ])  # fmt: skip
        children["beat"] = Child([
            python, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO",
            "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME,
        ])  # fmt: skip
        # Each writes its output to a file of its own: the terminal keeps the banner.
        return {
            name: replace(child, log=log_dir() / f"{name}.log") for name, child in children.items()
        }

    def _log_to_files(self, path: Path) -> None:
        """This process's log lines (the supervisor's: a child started, died, stopped) go to
        ``path``; errors also to the terminal, whatever LOGGING says of the root logger."""
        form = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        to_file = logging.FileHandler(path, delay=False)
        to_file.setFormatter(form)
        to_terminal = logging.StreamHandler(sys.stderr)
        to_terminal.setLevel(logging.ERROR)
        to_terminal.setFormatter(logging.Formatter("runportal: %(message)s"))
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.addHandler(to_file)
        root.addHandler(to_terminal)
        logger.setLevel(logging.INFO)

    def _first_account(self) -> str:
        """Create a staff account on a new installation and say how to log in."""
        user_model = get_user_model()
        password_file = Path(settings.VAR_DIR) / "admin-password"
        if not user_model.objects.exists():
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser("admin", "admin@localhost", password)
            password_file.unlink(missing_ok=True)
            write_private_file(password_file, password + "\n")
        if password_file.exists():
            password = password_file.read_text().strip()
            return (
                f"Sign in as 'admin' with password '{password}' (kept in {password_file}).\n"
                "The first sign-in sets up a second factor: scan the QR code with an "
                "authenticator app\n(or type its key; without an app: oathtool --totp -b KEY)."
            )
        return "Sign in with your account (create one with: manage.py createsuperuser)."


def admit_help(address: str) -> str:
    """How the operator lets a person in, in the admin's own words."""
    return (
        f"To let a person in: open the admin (http://{address}/admin/) → Users → Add user,\n"
        "give them a username and a password, then in the list of users tick them and choose\n"
        f'the action "{GRANT}". They sign in at http://{address}/ and set up\n'
        "their own second factor."
    )
