"""Every name a session gets outside the database, made in one place: the user's part of the
session URL, the Kubernetes objects' names and the label values that select them.

Each maker is a pure function of the text it names, and no two texts share a result, whatever
a username looks like. The rule, after kubespawner's ``slugs.py``: a text that is already safe
where it goes is used as it is; any other text is *made* into a name of a shape that a kept
text can never have, from a readable part and a hash of the whole text. So a username chosen
to look like someone else's made name is not kept (its shape is reserved) and is made into a
name of its own; two made names differ where their texts' hashes differ (64 bits or more).
Names are never truncated without a hash of the whole text, and never hashed into a shape a
kept text could also have (the old ``<readable>-<10 hex digits>`` label values could be both).

- :func:`label_value`: kept when a valid label value without ``--``; made into
  ``<readable>---<16 hex digits>`` (``x---…`` without a readable part).
- :func:`route_name`: kept when only letters, digits, ``-`` and ``_`` (at most 63) and not
  ending in ``-`` and 12 hex digits; made into ``<slug>-<12 hex digits>``. Unchanged from the
  first release: it is in every running session's URL and people's bookmarks.
- :func:`session_name`: ``jupyter-<readable>-<the session id's 32 hex digits>`` for the
  portal's session ids (UUIDs: the id itself, escaped, no hash); any other id
  ``jupyter-<readable>--<20 hex digits>`` (the only shape with ``--``).
- :func:`home_claim_name`: ``home-<readable>-<10 hex digits>`` of the storage folder's name
  (``u~<pk>``, made by the portal, never by a user). Unchanged from the first release: a new
  name would leave every user's home volume behind.
"""

from __future__ import annotations

import hashlib
import re
import uuid

#: A label value: at most 63 of ``[A-Za-z0-9_.-]``, alphanumeric at both ends (or empty).
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
MAX_LABEL = 63
#: What a made label value carries between its readable part and its hash.
MADE_SEPARATOR = "---"
LABEL_HASH_LENGTH = 16
#: A made label value's readable part: the rest of 63 characters.
_LABEL_READABLE = MAX_LABEL - len(MADE_SEPARATOR) - LABEL_HASH_LENGTH

_ROUTE_SAFE = re.compile(r"[A-Za-z0-9_-]{1,63}")
_ROUTE_HASHED = re.compile(r"-[0-9a-f]{12}")

SESSION_PREFIX = "jupyter-"
#: A session name's readable part: what 63 characters leave beside the prefix and the id.
_SESSION_READABLE = 22
_SESSION_HASH_LENGTH = 20


def digest(text: str, length: int) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def is_dns_label(name: str) -> bool:
    """A DNS-1123 label: at most 63 of ``[a-z0-9-]``, alphanumeric at both ends."""
    return len(name) <= MAX_LABEL and bool(_DNS_LABEL.fullmatch(name))


def is_dns_subdomain(name: str) -> bool:
    """A DNS-1123 subdomain: dot-separated DNS labels, at most 253 characters."""
    return len(name) <= 253 and all(_DNS_LABEL.fullmatch(part) for part in name.split("."))


def is_label_value(value: str) -> bool:
    return len(value) <= MAX_LABEL and bool(_LABEL_VALUE.fullmatch(value))


def dns_label_part(text: str, max_length: int) -> str:
    """``text`` lowercased into ``[a-z0-9-]``, at most ``max_length`` characters, maybe empty;
    never with ``--`` (runs of anything else are one ``-``), never ``-`` at either end."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def label_value(text: str) -> str:
    """A valid label value for ``text``, and another for every other text (module docstring)."""
    if is_label_value(text) and "--" not in text:
        return text
    readable = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:_LABEL_READABLE].rstrip("-")
    return f"{readable or 'x'}{MADE_SEPARATOR}{digest(text, LABEL_HASH_LENGTH)}"


def route_name(username: str) -> str:
    """The user's part of the session URL (``/user/<route>/``): the username itself when it
    has only letters, digits, ``-`` and ``_``; otherwise a readable slug of it plus a hash.

    Ingress controllers refuse other characters in path prefixes (ingress-nginx's strict path
    validation allows ``[A-Za-z0-9_/-]``; the API server refuses ``.`` and ``..`` segments),
    and usernames from identity providers are often e-mail addresses. Hashed names always end
    in ``-`` and 12 hex digits, and a name kept as it is never does (it is hashed too), so no
    username can take another's route; the hash keeps ``a.b`` and ``a-b`` apart.
    """
    if _ROUTE_SAFE.fullmatch(username) and not _ROUTE_HASHED.search(username[-13:]):
        return username
    slug = re.sub(r"[^a-z0-9]+", "-", username.lower()).strip("-")[:40].rstrip("-")
    return f"{slug or 'user'}-{digest(username, 12)}"


def session_name(username: str, session_id: str) -> str:
    """The name of a session's Pod, Service and Ingress (module docstring).

    A DNS-1035 label (a Service's name must start with a letter), at most 63 characters. The
    session id, not the user, makes it unique: the readable part only helps a person reading
    ``kubectl get pods``.
    """
    readable = dns_label_part(username, _SESSION_READABLE)
    middle = f"{readable}-" if readable else ""
    try:
        parsed = uuid.UUID(session_id)
    except ValueError:
        parsed = None
    if parsed is not None and str(parsed) == session_id:
        return f"{SESSION_PREFIX}{middle}{parsed.hex}"
    return f"{SESSION_PREFIX}{middle}-{digest(session_id, _SESSION_HASH_LENGTH)}"


def home_claim_name(folder: str) -> str:
    """The name of a user's home PVC, from their storage folder name (``u~<pk>``)."""
    readable = dns_label_part(folder, 40)
    middle = f"{readable}-" if readable else ""
    return f"home-{middle}{digest(folder, 10)}"
