"""``jlp``: the portal from a terminal. Each command is one call of the Python API
(``jlp_client.api``); this module only reads arguments and writes what came back.

Results go to standard output (``--json``: the API's own JSON), progress and errors to
standard error, errors as one line ``jlp: <detail> (<code>)``.

Past ~500 lines: the argument parser and one small command per call of the API (sign-in,
environments, terms, launch, status, stop, history, storage, …), each a few lines, which read
best side by side.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import webbrowser
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Callable

from jlp_client import __version__
from jlp_client.api import ApiError, Client, Session, portal_url
from jlp_client.config import (
    NotLoggedIn,
    config_path,
    forget_credentials,
    load_stored,
    store_credentials,
)

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_LOGGED_IN = 3
EXIT_NOT_RUNNING = 4
EXIT_UNREACHABLE = 5
EXIT_INTERRUPTED = 130


def _epilog() -> str:
    return f"""exit codes:
  {EXIT_OK}    done
  {EXIT_API_ERROR}    the portal refused or failed (its message and code are shown)
  {EXIT_USAGE}    wrong usage (unknown command, option or value)
  {EXIT_NOT_LOGGED_IN}    not logged in, or the portal refused the token (401)
  {EXIT_NOT_RUNNING}    launch --wait: the session ended instead of running, or --timeout passed
  {EXIT_UNREACHABLE}    the portal could not be reached
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)

Logging in stores the portal's address and your token, readable by you only, in
{config_path()}; JLP_URL and JLP_TOKEN in the environment take their place."""


# What a person can do about an error, by its code.
HINTS = {
    "terms_not_accepted": "read them with 'jlp terms', then accept them with 'jlp terms --accept'",
    "unknown_environment": "'jlp environments' lists those you may launch",
    "invalid_options": "'jlp environments' lists each environment's options",
    "no_active_session": "'jlp launch' starts one",
}


class UsageError(Exception):
    """A wrong argument found after parsing (an option's value, a missing token)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except NotLoggedIn as exc:
        _error(str(exc))
        return EXIT_NOT_LOGGED_IN
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except ApiError as exc:
        return _api_error(exc)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jlp",
        description="Launch and manage your Jupyter sessions on the launcher portal.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jlp {__version__}")
    parser.add_argument(
        "--json", action="store_true", help="print the API's JSON instead of text (for scripts)"
    )
    # --json after the command too; SUPPRESS keeps it from undoing one given before.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the API's JSON instead of text",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], **kwargs)

    login = command(
        "login",
        help="store the portal's address and your API token",
        description="Ask for an API token (make one on your account page) and store it with "
        "the portal's address; it is checked with the portal first. Without a terminal, the "
        "token is read from standard input.",
    )
    login.add_argument("--url", help="the portal's address, e.g. https://portal.example.org")
    login.set_defaults(run=cmd_login)

    logout = command("logout", help="forget the stored token")
    logout.set_defaults(run=cmd_logout)

    environments = command("environments", help="the environments you may launch")
    environments.set_defaults(run=cmd_environments)

    terms = command("terms", help="show (or accept) the current terms of use")
    terms.add_argument("--accept", action="store_true", help="accept the current version")
    terms.set_defaults(run=cmd_terms)

    launch = command(
        "launch",
        help="launch a session",
        description="Launch a session (or show the one you have). With --wait, report the "
        "queue position and start-up progress until it runs.",
    )
    launch.add_argument("environment", nargs="?", help="its slug (default: the portal's first)")
    launch.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an option of the environment (repeat for more)",
    )
    launch.add_argument("--wait", action="store_true", help="wait until it runs")
    launch.add_argument(
        "--open", action="store_true", help="open it in the browser once it runs (implies --wait)"
    )
    launch.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long"
    )
    launch.set_defaults(run=cmd_launch)

    status = command("status", help="your active session")
    status.set_defaults(run=cmd_status)

    stop = command("stop", help="stop your active session")
    stop.add_argument("--wait", action="store_true", help="wait until its server is down")
    stop.set_defaults(run=cmd_stop)

    history = command("history", help="your sessions, newest first")
    history.add_argument("-n", "--limit", type=int, default=20, help="how many (default 20)")
    history.add_argument("--state", help="only those in this state (e.g. failed)")
    history.set_defaults(run=cmd_history)

    session = command("session", help="one of your sessions, by its id")
    session.add_argument("id")
    session.set_defaults(run=cmd_session)

    storage = command("storage", help="your storage use, quotas and cleanups")
    storage.set_defaults(run=cmd_storage)
    return parser


# --- commands ---------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    stored = load_stored()
    url = args.url or os.environ.get("JLP_URL") or stored.url
    if not url and sys.stdin.isatty():
        url = _ask("Portal URL: ")
    if not url:
        # A piped stdin carries the token (`pass show portal | jlp login`), never the URL.
        raise UsageError("no portal URL given: use 'jlp login --url URL' (or set JLP_URL)")
    client_url = portal_url(url)
    token = _ask_secret(f"API token (make one at {client_url}/account/): ")
    if not token:
        raise UsageError("no token given")
    client = Client(client_url, token)
    try:
        terms: dict[str, Any] | None = client.terms()  # 401 here: the token is not good
    except ApiError as exc:
        if exc.code != "terms_not_published":
            raise
        terms = None
    path = store_credentials(client.url, token)
    print(f"Logged in to {client.url}; the token is stored in {path}.")
    if terms is not None and not terms.get("accepted"):
        print(
            f"You have not accepted the current terms of use (version {terms['version']}): "
            "read them with 'jlp terms', accept them with 'jlp terms --accept'."
        )
    return EXIT_OK


def cmd_logout(args: argparse.Namespace) -> int:
    if forget_credentials():
        print(f"Removed {config_path()}.")
    else:
        print("No stored token.")
    if os.environ.get("JLP_TOKEN"):
        print("JLP_TOKEN is still set in the environment.")
    return EXIT_OK


def cmd_environments(args: argparse.Namespace) -> int:
    environments = Client.from_config().environments()
    if args.json:
        return _json(environments)
    for environment in environments:
        hours = _duration(int(environment["max_duration_minutes"]) * 60)
        memory = _size(int(environment["memory_mb"]) * 2**20)
        print(
            f"{environment['slug']}: {environment['name']} "
            f"({environment['cpus']} CPU, {memory}, up to {hours})"
        )
        if environment.get("use_case"):
            print(f"    {environment['use_case']}")
        for option in environment.get("options") or []:
            print(f"    -o {option['name']}=…  {_option_help(option)}")
    return EXIT_OK


def cmd_terms(args: argparse.Namespace) -> int:
    client = Client.from_config()
    terms = client.terms()
    if args.accept:
        acceptance = client.accept_terms(str(terms["version"]))
        if args.json:
            return _json(acceptance)
        print(f"Accepted the terms of use, version {acceptance['version']}.")
        return EXIT_OK
    if args.json:
        return _json(terms)
    state = "accepted" if terms.get("accepted") else "not accepted yet"
    print(f"{terms['title']} (version {terms['version']}, {_when(terms.get('published_at'))})")
    print()
    print(str(terms.get("body", "")).strip())
    print()
    print(f"You have {state} this version.")
    if not terms.get("accepted"):
        print("Accept it with: jlp terms --accept")
    return EXIT_OK


def cmd_launch(args: argparse.Namespace) -> int:
    wait = args.wait or args.open
    if args.timeout is not None and not wait:
        raise UsageError("--timeout goes with --wait or --open")
    pairs = split_options(args.option)
    client = Client.from_config()
    environment = args.environment
    options: dict[str, Any] = {}
    if pairs:
        # Typed as the environment declares them: "-o workers=4" is a number, "-o note=4" text.
        choices = client.environments()
        if environment is None and choices:
            environment = str(choices[0]["slug"])
        schema = next((e for e in choices if e["slug"] == environment), None)
        options = typed_options(pairs, (schema or {}).get("options") or [])
    on_progress = ProgressPrinter()
    session = client.launch(environment, options or None, on_progress=on_progress)
    if not session.created:
        _note(f"You already have a session: {session.environment}, {session.state}.")
    if wait and session.waiting:
        on_progress(session)
        session = client.wait(args.timeout, on_progress=on_progress, session_id=session.id)
    if args.json:
        _json(session.data)
    else:
        for line in describe(session):
            print(line)
    if not wait:
        return EXIT_OK
    if session.running:
        if args.open and session.url:
            webbrowser.open(session.url)
        return EXIT_OK
    if session.waiting:
        _error(f"the session is still {session.state} after {args.timeout:g} s")
    else:
        detail = session.message or session.reason
        verb = "" if session.ended else "is "  # "the session failed", "… is stopping"
        _error(f"the session {verb}{session.state}" + (f": {detail}" if detail else ""))
    return EXIT_NOT_RUNNING


def cmd_status(args: argparse.Namespace) -> int:
    session = Client.from_config().status()
    if args.json:
        return _json(session.data if session else None)
    if session is None:
        print("No active session.")
        return EXIT_OK
    for line in describe(session):
        print(line)
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    session = Client.from_config().stop(wait=args.wait)
    if args.json:
        return _json(session.data)
    if session.ended:
        print(f"Session {session.id} ({session.environment}) {session.state}.")
    else:
        print(f"Session {session.id} ({session.environment}) is {session.state}.")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    sessions = Client.from_config().history(limit=args.limit, state=args.state)
    if args.json:
        return _json([session.data for session in sessions])
    if not sessions:
        print("No sessions.")
    for session in sessions:
        reason = f" ({session.reason})" if session.reason else ""
        print(
            f"{_when(session.get('created_at'))}  {session.environment}  "
            f"{session.state}{reason}  {session.id}"
        )
    return EXIT_OK


def cmd_session(args: argparse.Namespace) -> int:
    session = Client.from_config().session(args.id)
    if args.json:
        return _json(session.data)
    for line in describe(session):
        print(line)
    return EXIT_OK


def cmd_storage(args: argparse.Namespace) -> int:
    storage = Client.from_config().storage()
    if args.json:
        return _json(storage)
    for label in ("private", "scratch"):
        area = storage.get(label) or {}
        print(f"{label.capitalize()}: {_area(area)}")
    if storage.get("retention_exempt"):
        print("Your private storage is exempt from deletion for lack of use.")
    elif storage.get("delete_after"):
        print(
            f"Your private storage will be deleted after {_when(storage['delete_after'])} "
            "unless you start a session before."
        )
    for warning in storage.get("warnings") or []:
        print(f"Warning: {warning}")
    count = storage.get("removals_count") or 0
    print(f"Cleanup history: {count} file{'s' if count != 1 else ''} removed.")
    for removal in storage.get("recent_removals") or []:
        print(
            f"    {_when(removal.get('removed_at'))}  {removal['area']}/{removal['path']}  "
            f"{_size(removal.get('size') or 0)}  ({removal.get('rule', '')})"
        )
    return EXIT_OK


# --- what is shown ------------------------------------------------------------------------------


class ProgressPrinter:
    """``on_progress`` for ``launch --wait``: a line on standard error each time what there is
    to say changes (the queue position, the estimate, the start-up message)."""

    def __init__(self, write: Callable[[str], None] = lambda line: _note(line)) -> None:
        self.write = write
        self.last = ""

    def __call__(self, session: Session) -> None:
        line = progress_line(session)
        if line and line != self.last:
            self.last = line
            self.write(line)


def progress_line(session: Session) -> str:
    if session.state == "queued":
        parts = ["queued"]
        if session.queue_position is not None:
            parts.append(f"position {session.queue_position}")
        wait = session.queue_wait_seconds
        if wait is not None:
            parts.append("about to start" if wait < 5 else f"about {_duration(wait)} to wait")
        return ", ".join(parts)
    if session.state == "starting":
        return f"starting: {session.message or 'the server is starting'}"
    if session.state == "stopping":
        return "waiting for your last session to stop"
    return ""


def describe(session: Session) -> list[str]:
    """A session in a few lines, for people."""
    lines = [f"Session {session.id} ({session.environment}): {session.state}"]
    if session.state in ("queued", "starting"):
        lines.append(f"  {progress_line(session)}")
    if session.url:
        lines.append(f"  URL: {session.url}")
    if session.remaining_seconds is not None:
        lines.append(
            f"  Time left: {_duration(session.remaining_seconds)} "
            f"(until {_when(session.get('expires_at'))})"
        )
    if session.ended:
        reason = f" ({session.reason})" if session.reason else ""
        lines.append(f"  Ended{reason}" + (f": {session.message}" if session.message else ""))
    elif session.message and session.state not in ("queued", "starting"):
        lines.append(f"  {session.message}")
    if session.options:
        shown = ", ".join(f"{name}={value}" for name, value in session.options.items())
        lines.append(f"  Options: {shown}")
    return lines


def split_options(pairs: Sequence[str]) -> list[tuple[str, str]]:
    """``NAME=VALUE`` arguments as (name, value)."""
    split = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"option {pair!r}: write it as NAME=VALUE")
        split.append((name, value))
    return split


def typed_options(
    pairs: Sequence[tuple[str, str]], schema: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Each value typed as its option says (boolean, integer, or text); a name the environment
    does not have is passed on as text, and the portal says what is wrong."""
    types = {str(option["name"]): option.get("type") for option in schema}
    options: dict[str, Any] = {}
    for name, value in pairs:
        kind = types.get(name)
        if kind == "boolean":
            lowered = value.lower()
            if lowered not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                raise UsageError(f"option {name}: give true or false, not {value!r}")
            options[name] = lowered in ("true", "yes", "1", "on")
        elif kind == "integer":
            try:
                options[name] = int(value)
            except ValueError:
                raise UsageError(f"option {name}: give a whole number, not {value!r}") from None
        else:
            options[name] = value
    return options


def _option_help(option: dict[str, Any]) -> str:
    kind = option.get("type")
    if kind == "choice":
        allowed = "|".join(str(choice) for choice in option.get("choices") or [])
    elif kind == "integer":
        allowed = f"{option.get('min', '')}…{option.get('max', '')}"
    else:
        allowed = str(kind)
    default = json.dumps(option.get("default"))
    label = option.get("label") or option["name"]
    return f"{label}: {allowed} (default {default})"


def _area(area: dict[str, Any]) -> str:
    quota = _size(int(area.get("quota_bytes") or 0))
    if area.get("used_bytes") is None:
        return f"not measured yet (quota {quota})"
    used = int(area["used_bytes"])
    share = f", {100 * used / area['quota_bytes']:.0f}%" if area.get("quota_bytes") else ""
    over = ", OVER QUOTA" if area.get("over_quota") else ""
    files = area.get("files")
    counted = f", {files} files" if files is not None else ""
    return (
        f"{_size(used)} of {quota}{share}{over}{counted} (measured "
        f"{_when(area.get('measured_at'))})"
    )


def _size(value: float) -> str:
    # 1024-based with the web pages' names (Django's filesizeformat).
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _when(value: Any) -> str:
    """An API time (ISO 8601) as ``YYYY-MM-DD HH:MM UTC``; what came otherwise."""
    if not value:
        return "-"
    text = str(value)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _json(value: Any) -> int:
    print(json.dumps(value, indent=2, sort_keys=True))
    return EXIT_OK


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _error(message: str) -> None:
    print(f"jlp: {message}", file=sys.stderr, flush=True)


def _api_error(exc: ApiError) -> int:
    _error(str(exc))
    if exc.status == 401:
        _note("Your token was refused: make a new one on your account page, then 'jlp login'.")
        return EXIT_NOT_LOGGED_IN
    hint = HINTS.get(exc.code)
    if hint:
        _note(f"To go on: {hint}.")
    if exc.code == "connection_error":
        return EXIT_UNREACHABLE
    return EXIT_API_ERROR


def _ask(prompt: str) -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    return input(prompt).strip()


def _ask_secret(prompt: str) -> str:
    # Without a terminal (a pipe: `pass show portal | jlp login`), nothing to hide it from.
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    return getpass.getpass(prompt).strip()


if __name__ == "__main__":
    sys.exit(main())
