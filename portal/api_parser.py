"""What the API accepts as input, checked in one place for every endpoint.

PostgreSQL refuses NUL in text (psycopg raises ``ValueError`` at the query) and UTF-8 cannot
encode a lone surrogate (``UnicodeEncodeError`` wherever the text is written out): either, in
any string that a view stores or looks up, used to surface as a 500. Python's ``json`` decodes
nested arrays recursively, so a body nested a thousand deep raised ``RecursionError``. The
parsers here (DRF's ``DEFAULT_PARSER_CLASSES``) refuse all three with 400 before any view or
serializer sees the data, in keys as well as values; ``portal.api_middleware`` applies the same
check to query strings. The body's size is bounded before parsing by Django's
``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413, ``portal.api_errors``).
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from django.http import QueryDict
from rest_framework import parsers

from portal.api_errors import ApiError

#: How deep arrays and objects may nest in a JSON body: far more than any endpoint's body needs,
#: far less than Python's recursion limit (1,000) that its decoder would otherwise meet.
MAX_DEPTH = 32

_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")
# A JSON string, as the decoder reads one (a backslash escapes the next character), or a
# bracket: strings are skipped, so brackets inside them do not count as nesting.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def invalid_characters(where: str) -> ApiError:
    return ApiError(
        400,
        f"{where} contains a NUL character or an unpaired UTF-16 surrogate, "
        "which the portal does not accept.",
        "invalid_characters",
    )


def has_forbidden_characters(text: str) -> bool:
    """Whether ``text`` holds NUL or a lone surrogate (a paired one decodes to one character)."""
    return _FORBIDDEN.search(text) is not None


def _strings(data: Any) -> Iterator[str]:
    """Every string in decoded JSON, keys included; iterative, so depth costs no stack."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def form_strings(data: QueryDict) -> Iterable[str]:
    """Every key and value of a form or query string."""
    for key, values in data.lists():
        yield key
        yield from (value for value in values if isinstance(value, str))


def check_strings(strings: Iterable[str], where: str) -> None:
    """Raises 400 ``invalid_characters`` if any of ``strings`` holds NUL or a lone surrogate."""
    if any(has_forbidden_characters(text) for text in strings):
        raise invalid_characters(where)


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON ``text`` nests arrays and objects deeper than ``limit``, read without
    recursion. Text that is not JSON may count wrong, but never less deep than the decoder
    would go before it fails: both read strings the same way."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return True
        elif token in "]}":
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: JSON allows it, no column or serializer does
        raise ValueError(f"{text} is out of range")
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the checks above: 400 ``invalid_json``, ``too_deep`` or
    ``invalid_characters``."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            codecs.lookup(encoding)
            text = stream.read().decode(encoding)
        except (LookupError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"The body is not {encoding} text: {exc}", "invalid_json") from None
        if too_deep(text):
            raise ApiError(400, f"The body nests deeper than {MAX_DEPTH} levels.", "too_deep")
        try:
            data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        except ValueError as exc:  # JSONDecodeError, or a number out of range
            raise ApiError(400, f"The body is not valid JSON: {exc}", "invalid_json") from None
        check_strings(_strings(data), "The body")
        return data


class FormParser(parsers.FormParser):
    """DRF's form parser, refusing NUL (``%00``) in keys and values."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        data = super().parse(stream, media_type, parser_context)
        check_strings(form_strings(data), "The form")
        return data


class MultiPartParser(parsers.MultiPartParser):
    """DRF's multipart parser, refusing NUL in field names, values and file names."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        parsed = super().parse(stream, media_type, parser_context)
        files = [
            text
            for key, uploads in parsed.files.lists()
            for text in (key, *(upload.name or "" for upload in uploads))
        ]
        check_strings([*form_strings(parsed.data), *files], "The form")
        return parsed
