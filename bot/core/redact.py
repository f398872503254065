"""Masking of secrets in text that leaves the bot (chat, terminal, logs, JSON).

Each rule keeps the shape of the line (the header name, the URL, the user) and replaces only the
secret with ``***``, so quoted evidence still reads like the original.
"""

from __future__ import annotations

import re

MASK = "***"

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys, whole block or a single line holding the armour.
    (
        re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|$)", re.S),
        r"-----BEGIN \1PRIVATE KEY-----" + MASK,
    ),
    # Cookie headers: the whole value (every cookie may be a session).
    (re.compile(r"(?i)\b((?:set-)?cookie\"?\s*:\s*)[^\r\n\"]+"), r"\1" + MASK),
    # Authorization-style headers: keep the scheme (Bearer, Basic), mask the credentials.
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization|x-api-key|x-auth-token|api-key)(\"?\s*[:=]\s*\"?)"
            r"((?:bearer|basic|token|digest)\s+)?[^\s\",;]+"
        ),
        r"\1\2\3" + MASK,
    ),
    # Passwords in URLs and DSNs: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s\"']*):([^@/\s\"']+)@"), r"\1:" + MASK + "@"),
    # key=value secrets in query strings, config lines and environment dumps.
    (
        re.compile(
            r"(?i)\b([a-z0-9_.-]*(?:password|passwd|pwd|secret|token|api_?key|access_?key|signature|sig)"
            r")(\s*[=:]\s*)(?!\*\*\*)([^\s&\"',;]+)"
        ),
        r"\1\2" + MASK,
    ),
    # Slack tokens, Telegram bot tokens, AWS access key ids, JWTs.
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MASK),
    (re.compile(r"\b(?:bot)?\d{6,12}:[A-Za-z0-9_-]{30,}\b"), MASK),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MASK),
)


def redact(text: str) -> str:
    """Return ``text`` with every secret we recognise replaced by ``***``."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text
