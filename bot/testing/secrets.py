"""The secrets a test run configures, so the run can prove none of them reached a log.

Fakes and test configurations register every token, signing secret, password or passphrase they hand
to the bot (``register(value, "where it comes from")``, which returns the value so it can be used
inline); at the end of the session the suite scans the logs it captured for each registered value
(see ``tests/conftest.py``). Values are kept for the whole process.

A value shorter than :data:`MIN_LENGTH` cannot be told apart from ordinary log text (``xoxb-x`` would
match itself in any log that mentions the prefix), so it is not kept: give test secrets distinctive
values when the scan should cover them.
"""

from __future__ import annotations

import threading

#: The shortest value worth scanning a log for.
MIN_LENGTH = 8

_LOCK = threading.Lock()
_REGISTERED: dict[str, str] = {}


def register(value: str, origin: str = "") -> str:
    """Remember ``value`` as a configured secret (``origin`` says where it comes from); return it.
    Values shorter than :data:`MIN_LENGTH` are returned but not kept."""
    if len(value) >= MIN_LENGTH:
        with _LOCK:
            _REGISTERED.setdefault(value, origin)
    return value


def registered() -> dict[str, str]:
    """Every registered secret, with where it comes from."""
    with _LOCK:
        return dict(_REGISTERED)


def found_in(text: str, secrets: dict[str, str]) -> list[str]:
    """The secrets of ``secrets`` that occur in ``text``, each shown by its origin and first characters
    (never in full: the report of a leak must not be one)."""
    return [f"{origin or 'a test secret'} ({value[:4]}…)" for value, origin in secrets.items() if value in text]
