"""Shared readers for the intake parsers: typed field access that names the JSON path of a bad value.

Every reader is liberal about what it does not use (extra keys, missing optional ones, ``null`` for
"absent") and strict about the type of what it does use: a wrong type raises :class:`PayloadError`
with the path of the field (``alerts[2].labels.service``) and a one-line problem.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

from bot.errors import PayloadError

__all__ = ["PayloadError"]

State = Literal["firing", "resolved"]

#: Label and annotation names that carry the HTTP status, most specific first.
STATUS_KEYS = ("http_status", "status_code", "code", "status")
#: Label names that carry the site URL (``generatorURL`` is the rule's page, never the site).
URL_KEYS = ("url", "instance")
#: Label names that name the service.
SERVICE_KEYS = ("service", "job")
#: Label names that name the host.
HOST_KEYS = ("host", "hostname", "node", "nodename")

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_STATUS_TEXT = (
    # "Request failed with status code 502", "status=503", "status: 504", "HTTP status 500"
    re.compile(r"(?i)\bstatus(?:[ _-]?code)?\s*(?:[:=]|is|of)?\s*([1-5][0-9]{2})(?![0-9.])"),
    # Uptime Kuma's successful check message "502 - Bad Gateway"
    re.compile(r"^\s*([1-5][0-9]{2}) - "),
    # "got HTTP 502", "HTTP/1.1 503 Service Unavailable"
    re.compile(r"\bHTTP(?:/[0-9](?:\.[0-9])?)?\s+([1-5][0-9]{2})(?![0-9.])"),
    # "502 Bad Gateway", "504 Gateway Timeout"
    re.compile(
        r"(?<![0-9.])([1-5][0-9]{2})\s+(?:Bad Gateway|Service Unavailable|Gateway Time-?out|Internal Server Error"
        r"|Not Implemented|HTTP Version Not Supported|Too Many Requests|Web Server Returned an Unknown Error"
        r"|Web Server Is Down|Connection Timed Out|Origin Is Unreachable|A Timeout Occurred|SSL Handshake Failed"
        r"|Invalid SSL Certificate)",
        re.IGNORECASE,
    ),
)
_VALUE_STRING = re.compile(r"\bvalue=(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)")
_MAX_SHOWN = 60


def path(parent: str, key: str | int) -> str:
    """The JSON path of ``key`` under ``parent``: ``alerts[2].status``, ``labels["a.b"]``."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    part = f".{key}" if _IDENT.match(key) else f"[{json.dumps(key)}]"
    return part[1:] if not parent and part.startswith(".") else f"{parent}{part}"


def shown(value: object) -> str:
    """A short, one-line rendering of a bad value for an error message."""
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int) and abs(value) >= 10**_MAX_SHOWN:
        return "a huge number"
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def expect_object(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise PayloadError(where or "body", f"expected a JSON object, got {type_name(value)}")
    return value


def expect_list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise PayloadError(where, f"expected a list, got {type_name(value)}")
    return value


def opt_object(obj: Mapping[str, object], key: str, where: str) -> dict[str, object] | None:
    value = obj.get(key)
    return None if value is None else expect_object(value, path(where, key))


def opt_str(obj: Mapping[str, object], key: str, where: str) -> str | None:
    """A string field; missing or ``null`` is None, any other type is an error."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(path(where, key), f"expected a string, got {type_name(value)}")
    return value


def opt_id(obj: Mapping[str, object], key: str, where: str) -> str | None:
    """An identifier given as a non-empty string or an integer; missing or ``null`` is None."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**30:
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise PayloadError(path(where, key), f"expected a non-empty string or an integer, got {shown(value)}")


def str_map(obj: Mapping[str, object], key: str, where: str) -> dict[str, str]:
    """A ``{name: text}`` object (labels, annotations); missing or ``null`` is empty."""
    value = obj.get(key)
    if value is None:
        return {}
    mapping = expect_object(value, path(where, key))
    result: dict[str, str] = {}
    for name, item in mapping.items():
        if not isinstance(item, str):
            raise PayloadError(path(path(where, key), name), f"expected a string, got {type_name(item)}")
        result[name] = item
    return result


def state(value: object, where: str) -> State:
    if value == "firing":
        return "firing"
    if value == "resolved":
        return "resolved"
    raise PayloadError(where, f'expected "firing" or "resolved", got {shown(value)}')


def timestamp(obj: Mapping[str, object], key: str, where: str) -> datetime | None:
    """An RFC 3339 / ISO 8601 time as an aware UTC datetime; naive times are UTC.

    Missing, ``null``, ``""`` and Go's zero time (``0001-01-01T00:00:00Z``, what Alertmanager and
    Grafana send for "no end") are None.
    """
    text = opt_str(obj, key, where)
    if text is None or not text.strip():
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PayloadError(path(where, key), f"expected an RFC 3339 time, got {shown(text)}") from None
    if parsed.year <= 1:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise PayloadError(path(where, key), f"time out of range: {shown(text)}") from None


def coerce_status(value: object) -> int | None:
    """An HTTP status from a label, annotation or number: an integer 100..599, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 100 <= value <= 599 else None
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return coerce_status(int(value))
        return None
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 3 and text.isascii() and text.isdigit():
            return coerce_status(int(text))
    return None


def status_in_text(text: str | None) -> int | None:
    """The HTTP status a message names ("Request failed with status code 502", "502 - Bad Gateway")."""
    if not text:
        return None
    for pattern in _STATUS_TEXT:
        match = pattern.search(text)
        if match:
            return coerce_status(match.group(1))
    return None


def status_in_values(values: Iterable[object]) -> int | None:
    """The HTTP status among query values, when exactly one distinct value is a whole number in 100..599."""
    found = {code for code in (coerce_status(v) for v in values if not isinstance(v, str)) if code is not None}
    return found.pop() if len(found) == 1 else None


def status_in_value_string(text: str | None) -> int | None:
    """The status in Grafana's legacy ``valueString`` (``[ var='B' labels={...} value=502 ]``)."""
    if not text:
        return None
    values: list[object] = []
    for match in _VALUE_STRING.finditer(text):
        try:
            values.append(float(match.group(1)))
        except ValueError:  # pragma: no cover - the pattern only matches numbers
            continue
    return status_in_values(values)


def status_from(labels: Mapping[str, str], annotations: Mapping[str, str], *texts: str | None) -> int | None:
    """The HTTP status from labels, then annotations, then free text, whichever has one first."""
    for source in (labels, annotations):
        for key in STATUS_KEYS:
            code = coerce_status(source.get(key))
            if code is not None:
                return code
    for text in texts:
        code = status_in_text(text)
        if code is not None:
            return code
    return None


def site_url(value: str | None) -> str | None:
    """``value`` when it is an absolute http(s) URL with a host, else None."""
    if not value:
        return None
    text = value.strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return text


def url_from(labels: Mapping[str, str], annotations: Mapping[str, str]) -> str | None:
    for source in (labels, annotations):
        for key in URL_KEYS:
            url = site_url(source.get(key))
            if url is not None:
                return url
    return None


def host_of(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        return urlsplit(url).hostname or None
    except ValueError:
        return None


def host_from(labels: Mapping[str, str], url: str | None) -> str | None:
    """A host label, else the URL's host, else the host part of a non-URL ``instance`` (``10.0.0.7:8080``)."""
    for key in HOST_KEYS:
        value = labels.get(key, "").strip()
        if value:
            return value
    host = host_of(url)
    if host is not None:
        return host
    instance = labels.get("instance", "").strip()
    if instance and "://" not in instance:
        return host_of(f"//{instance}")
    return None


def first(mapping: Mapping[str, str], keys: Iterable[str]) -> str | None:
    for key in keys:
        value = mapping.get(key, "").strip()
        if value:
            return value
    return None


def fingerprint(source: str, labels: Mapping[str, str], *extra: str | None) -> str:
    """A stable 16-hex-digit key for an alert whose source sends none: a hash of source and labels."""
    body = json.dumps([source, sorted(labels.items()), list(extra)], separators=(",", ":"))
    return hashlib.sha256(body.encode("ascii")).hexdigest()[:16]
