"""Masking of secrets in text that leaves the bot (chat, terminal, logs, JSON).

Each rule keeps the shape of the line (the header name, the scheme, the URL, the user, the quotes) and
replaces only the secret with ``***``, so quoted evidence still reads like the original. Masked:

- private keys: a PEM block from ``-----BEGIN … PRIVATE KEY-----`` to its END line (also inside a
  JSON string with ``\\n`` escapes), or to the end of the text when the END line is missing;
- ``Authorization``/``Proxy-Authorization`` headers (the scheme stays: ``Bearer ***``; a Digest or
  AWS4 header loses everything after the scheme), ``Cookie``/``Set-Cookie`` headers (the whole value),
  and ``Bearer``/``Basic`` credentials logged without their header name (``"$http_authorization"``);
- ``name=value``, ``name: value`` and ``"name": "value"`` pairs whose name ends in a secret word
  (``password``, ``passwd``, ``pwd``, ``passphrase``, ``secret``, ``token``, ``api_key``,
  ``access_key``, ``AccountKey``, ``routing_key``, ``signature``, ``credentials``…) or is exactly
  ``key=`` or ``sig=``: query strings, config files, environment dumps, JSON, YAML, nginx
  ``proxy_set_header``/``fastcgi_param`` lines. A name that only starts with such a word
  (``tokenizer``, ``password_reset``, ``key_count``) is left alone, and so is a value that already
  stands for a hidden secret (``(redacted)``, ``<secret>``, ``***``);
- passwords in URLs and DSNs (``scheme://user:***@host``), ``curl -u user:***``, ``mysql -p***``,
  ``--password ***``, ``.netrc`` lines, Docker ``"auth"`` entries;
- token formats recognised anywhere: Slack (``xoxb-``, ``xoxp-``, ``xapp-``, ``xoxe``) and Slack
  webhook URLs, Telegram bot tokens (``/bot***/`` in Bot API URLs), GitHub and GitLab tokens, AWS key
  ids (``AKIA``/``ASIA``…), JWTs, Stripe secret keys, SendGrid keys, Google API keys and OAuth
  tokens, npm and PyPI tokens.

Each rule runs only when a substring test on the lower-cased text says it could match, so a line with
nothing secret-looking costs a ``lower()`` and a few ``in`` tests.

:func:`redact_or_withhold` is what chat-bound text goes through: should redaction raise, or a secret
shape survive it, the text is replaced by :data:`WITHHELD` instead of being posted raw.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MASK = "***"
#: What replaces a text that could not be redacted: nothing of the original is kept.
WITHHELD = "[withheld: could not redact]"

Replacement = str | Callable[[re.Match[str]], str]


@dataclass(frozen=True)
class _Rule:
    name: str
    #: Lower-case substrings; the rule runs only when the lower-cased text holds one of them…
    needles: tuple[str, ...]
    pattern: re.Pattern[str]
    replacement: Replacement
    #: …and every one of these…
    also: tuple[str, ...] = ()
    #: …and this finds something in the (original) text.
    gate: re.Pattern[str] | None = None

    def applies(self, present: frozenset[str], text: str) -> bool:
        """Whether the rule may match ``text``, whose lower-cased form holds the needles ``present``."""
        return (
            not present.isdisjoint(self.needles)
            and present.issuperset(self.also)
            and (self.gate is None or self.gate.search(text) is not None)
        )


def _masking(*keep: str) -> Callable[[re.Match[str]], str]:
    """A replacement made of the named groups (empty when they did not take part), ``*`` for the mask."""

    def replace(match: re.Match[str]) -> str:
        return "".join(MASK if name == "*" else (match.group(name) or "") for name in keep)

    return replace


def _pem(match: re.Match[str]) -> str:
    kind = match.group("kind")
    return f"-----BEGIN {kind}-----{MASK}" + (f"-----END {kind}-----" if match.group("end") else "")


#: Authorization schemes whose credential is one word; any other scheme (Digest, AWS4-HMAC-SHA256,
#: Negotiate…) carries parameters, and the whole rest of the header value is masked.
_ONE_WORD_SCHEMES = frozenset({"bearer", "basic", "token", "bot", "apikey", "key", "jwt", "sso-key", "otp"})


#: Values that already stand for a hidden secret (slack_sdk's ``(redacted)``, Alertmanager's
#: ``<secret>``, a row of stars), or only say whether there was one (MySQL's ``Access denied for user
#: 'app'@'localhost' (using password: YES)``), are left as they are.
_PLACEHOLDER = re.compile(r"[(<\[](?:redacted|hidden|secret|masked|filtered)[)>\]]|\*+|REDACTED|(?:YES|NO)\)?")


def _authorization(match: re.Match[str]) -> str:
    head, scheme, rest = match.group("head"), match.group("scheme") or "", match.group("rest")
    if scheme.strip().lower() in _ONE_WORD_SCHEMES or not scheme:
        credential = re.match(r"[^\s\"',;{}\[\]\\]*", rest)
        assert credential is not None  # the pattern matches the empty string
        if not credential.group() or _PLACEHOLDER.fullmatch(credential.group()):
            return match.group(0)
        return head + scheme + MASK + rest[credential.end() :]
    close = match.group("q3") or match.group("q1")
    if close:
        end = re.search(r"(?<!\\)" + close, rest)
        if end is not None:
            return head + scheme + MASK + rest[end.start() :]
    return head + scheme + MASK


def _looks_like_credential(word: str) -> bool:
    """A word after ``Bearer``/``Basic`` in free text is a credential when it is not an English word."""
    stem = word.rstrip("=")
    if len(stem) < 8:
        return False
    if word != stem or any(c.isdigit() for c in stem) or stem.count(".") >= 2:
        return True
    return len(stem) >= 16 and any(c.isupper() for c in stem[1:]) and any(c.islower() for c in stem)


def _bare_credential(match: re.Match[str]) -> str:
    if match.start("quote") != -1 or _looks_like_credential(match.group("cred")):
        return match.group("head") + MASK
    return match.group(0)


# Names whose value is a secret. Any prefix may come before them (``DB_PASSWORD``, ``clientSecret``,
# ``X-Auth-Token``, ``SharedAccessKey``), but the name must end with one of them.
_SECRET_WORDS = (
    r"password|passwd|passphrase|pwd|secret|token|api[_-]?key|signature|credentials?|"
    r"(?:access|account|private|secret|signing|routing|integration|master|encryption|license|"
    r"subscription|client|session|shared[_-]?access|app|auth|hmac|webhook|deploy)[_-]?key"
)
#: A name that is nothing but one of these, followed by ``=``, is a secret too: ``key=`` (Google),
#: ``sig=`` (Azure SAS). (``Server Temp Key: X25519`` in ``openssl s_client`` output is not.)
_SHORT_WORDS = r"key|sig"
#: Where a name may start: not inside a word, or right after an escaped ``\r``/``\n``/``\t`` (a
#: ``repr`` of raw HTTP bytes: ``b'...\r\nSet-Cookie: ...'``).
_START = r"(?:(?<![A-Za-z0-9_.-])|(?<=\\[rnt]))"

# The value: a quoted string (its content masked, the quotes kept; an unclosed quote runs to the end
# of the line), else a bare word up to a separator. ``(?!\*\*\*)`` keeps redaction idempotent.
_VALUE = r"""(?:"(?!\*\*\*")(?:[^"\\\r\n]|\\.)+"?|'(?!\*\*\*')[^'\r\n]+'?|(?!\*\*\*)(?![{\[])[^\s&"',;<>]+)"""


def _assignment(match: re.Match[str]) -> str:
    value = match.group("value")
    if _PLACEHOLDER.fullmatch(value.strip("\"'")):
        return match.group(0)
    if value[0] in "\"'":
        close = value[0] if len(value) >= 2 and value.endswith(value[0]) else ""
        return match.group("name") + match.group("sep") + value[0] + MASK + close
    return match.group("name") + match.group("sep") + MASK


# scheme://user:password@host. Userinfo cannot hold a raw / ? # (RFC 3986), so the password ends at
# the last @ before one of them; a raw @ in a hand-written DSN password is masked with the rest.
_URL_PASSWORD = r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s\"'<>]*:)(?!\*\*\*@)[^\s/?#\"'<>]+(?P<at>@)"

_RULES: tuple[_Rule, ...] = (
    _Rule(
        "pem-private-key",
        ("private key",),
        re.compile(
            r"-----BEGIN (?P<kind>(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----"
            r"(?:.*?(?P<end>-----END (?P=kind)-----)|.*)",
            re.S,
        ),
        _pem,
    ),
    _Rule(
        "authorization-header",
        ("authorization",),
        re.compile(
            r"(?i)(?P<head>(?P<q1>[\"']?)(?:\b|(?<=\\[rnt]))(?:proxy-)?authorization[\"']?"
            r"(?:[ \t]*[:=][ \t]*|[ \t]+(?=[\"']))(?P<q3>[\"']?))"
            r"(?P<scheme>[A-Za-z][A-Za-z0-9_-]*[ \t]+(?=\S))?(?P<rest>[^\r\n]*)"
        ),
        _authorization,
    ),
    _Rule(
        "cookie-header",
        ("cookie",),
        re.compile(
            r"(?i)(?P<head>(?:(?<![\w-])|(?<=\\[rnt]))(?:set-)?cookie[\"']?[ \t]*[:=][ \t]*[\"']?)"
            r"(?!\s|\*\*\*)[^\r\n\"'\\]+"
        ),
        _masking("head", "*"),
    ),
    _Rule(
        "bare-credential",
        ("bearer", "basic"),
        re.compile(
            r"(?P<head>(?:(?P<quote>(?<=[\"']))|\b)(?:[Bb]earer|BEARER|[Bb]asic|BASIC)[ \t]+)"
            r"(?!\*\*\*)(?P<cred>[A-Za-z0-9._~+/-]+=*)(?(quote)(?=[\"'])|(?![\w.~+/=-]))"
        ),
        _bare_credential,
    ),
    _Rule(
        "docker-auth",
        ('"auth"',),
        re.compile(r"(?P<head>\"auth\"[ \t]*:[ \t]*\")(?!\*\*\*\")[^\"\r\n]+(?P<tail>\")"),
        _masking("head", "*", "tail"),
    ),
    _Rule(
        "slack-webhook",
        ("hooks.slack.com",),
        re.compile(r"(?P<head>hooks\.slack\.com/(?:services|workflows|triggers)/)(?!\*\*\*)[A-Za-z0-9_/+-]+"),
        _masking("head", "*"),
    ),
    _Rule(
        "telegram-bot-token",
        (":",),
        re.compile(r"(?<![A-Za-z0-9_])(?P<bot>bot)?\d{5,12}:[A-Za-z0-9_-]{30,}(?![A-Za-z0-9_-])"),
        _masking("bot", "*"),
        gate=re.compile(r"\d{5}:[A-Za-z0-9_-]{30}"),
    ),
    _Rule(
        "secret-assignment",
        ("pass", "pwd", "secret", "token", "key", "sig", "credential"),
        re.compile(
            r"(?i)(?P<name>" + _START + r"[A-Za-z0-9_.-]*?(?:" + _SECRET_WORDS + r")"
            r"(?<!\b(?-i:PWD))(?<!\b(?-i:OLDPWD)))"
            r"(?P<sep>[\"']?[ \t]*(?:=>|[=:])[ \t]*)"
            r"(?P<value>" + _VALUE + r")"
        ),
        _assignment,
        gate=re.compile(
            r"(?i)(?:pass(?:wd|word|phrase)|pwd|secret|token|key|signature|credentials?)[\"']?[ \t]*(?:=>|[=:])"
        ),
    ),
    _Rule(
        "short-assignment",
        ("key=", "sig="),
        re.compile(r"(?i)(?P<name>" + _START + r"(?:" + _SHORT_WORDS + r"))(?P<sep>=)(?P<value>" + _VALUE + r")"),
        _assignment,
    ),
    # Server config directives: ``proxy_set_header X-Api-Key "…";``, ``fastcgi_param DB_PASSWORD …;``
    # (an nginx ``$variable`` is not a secret).
    _Rule(
        "config-directive",
        ("_header", "_param", "env "),
        re.compile(
            r"(?i)(?P<name>\b(?:proxy_set_header|grpc_set_header|add_header|more_set_headers|fastcgi_param|"
            r"uwsgi_param|scgi_param|env)[ \t]+[\"']?[A-Za-z0-9_.-]*?(?:" + _SECRET_WORDS + r"))(?P<sep>[\"']?[ \t]+)"
            r"(?P<value>\"(?![$]|\*\*\*\")[^\"\r\n]*\"|'(?![$]|\*\*\*')[^'\r\n]*'|(?![$\"']|\*\*\*)[^\s;]+)"
        ),
        _assignment,
    ),
    _Rule("url-password", ("://",), re.compile(_URL_PASSWORD), _masking("head", "*", "at"), also=("@",)),
    _Rule(
        "curl-user",
        ("curl",),
        re.compile(r"(?P<head>\bcurl\b[^\r\n]*?(?<!\S)(?:-u|--user)[ \t=]*[\"']?[^\s:\"']*:)(?!\*\*\*)[^\s\"']+"),
        _masking("head", "*"),
    ),
    _Rule(
        "mysql-password-flag",
        ("mysql", "mariadb"),
        re.compile(r"(?P<head>\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)\b[^\r\n]*?(?<!\S)-p)(?!\*\*\*)\S+"),
        _masking("head", "*"),
    ),
    _Rule(
        "password-flag",
        ("--",),
        re.compile(
            r"(?i)(?P<head>(?<!\S)--(?:[a-z0-9-]*-)?(?:password|passwd|pass|token|secret|api-key)[ \t]+)"
            r"(?!\*\*\*)(?!-)\S+"
        ),
        _masking("head", "*"),
    ),
    _Rule(
        "netrc",
        ("password",),
        re.compile(r"(?P<head>\blogin[ \t]+\S+[ \t]+password[ \t]+)(?!\*\*\*)\S+"),
        _masking("head", "*"),
    ),
    # Token formats recognised on their own: the whole token goes.
    _Rule("slack-token", ("xox", "xapp-"), re.compile(r"\b(?:xox[a-z](?:\.xox[a-z])?|xapp)-[A-Za-z0-9-]{10,}"), MASK),
    _Rule(
        "github-token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-"),
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255}|glpat-[A-Za-z0-9_-]{20,})\b"),
        MASK,
    ),
    _Rule(
        "aws-access-key-id",
        ("akia", "asia", "agpa", "aida", "aroa", "aipa", "anpa", "anva", "a3t"),
        re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|A3T[A-Z0-9])[A-Z0-9]{16}\b"),
        MASK,
    ),
    _Rule("jwt", ("eyj",), re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"), MASK),
    _Rule(
        "stripe-secret-key",
        ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"),
        re.compile(r"\b(?:[sr]k_(?:live|test)_[A-Za-z0-9]{10,}|whsec_[A-Za-z0-9]{20,})\b"),
        MASK,
    ),
    _Rule("sendgrid-key", ("sg.",), re.compile(r"\bSG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}"), MASK),
    _Rule(
        "google-key",
        ("aiza", "ya29.", "gocspx-"),
        re.compile(
            r"(?:\bAIza[0-9A-Za-z_-]{35}|\bya29\.[0-9A-Za-z_-]{20,}|\bGOCSPX-[A-Za-z0-9_-]{28})(?![0-9A-Za-z_-])"
        ),
        MASK,
    ),
    _Rule(
        "package-registry-token",
        ("npm_", "pypi-"),
        re.compile(r"\b(?:npm_[A-Za-z0-9]{36}|pypi-[A-Za-z0-9_-]{50,})\b"),
        MASK,
    ),
)


def _present(text: str) -> frozenset[str]:
    """The needles of every rule that the lower-cased ``text`` holds (one pass over a short list)."""
    lowered = text.lower()
    return frozenset([n for n in _NEEDLES if n in lowered])


def redact(text: str) -> str:
    """Return ``text`` with every secret we recognise replaced by ``***``; redacting twice changes nothing."""
    if not text:
        return text
    present = _present(text)
    for rule in _RULES:
        if rule.applies(present, text):
            text = rule.pattern.sub(rule.replacement, text)
    return text


#: What must never survive redaction: every self-identifying token, a PEM body, a URL password.
_LEAK_SHAPES: tuple[_Rule, ...] = (
    *(rule for rule in _RULES if rule.replacement == MASK),
    _Rule(
        "private key",
        ("private key",),
        re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?!\*\*\*)"),
        MASK,
    ),
    _Rule("password in a URL", ("://",), re.compile(_URL_PASSWORD), MASK, also=("@",)),
    _Rule(
        "Telegram bot token",
        (":",),
        re.compile(r"(?<![A-Za-z0-9_])(?:bot)?\d{5,12}:[A-Za-z0-9_-]{30,}(?![A-Za-z0-9_-])"),
        MASK,
    ),
)


#: Every needle of every rule, looked for once per text.
_NEEDLES = tuple(sorted({n for rule in (*_RULES, *_LEAK_SHAPES) for n in (*rule.needles, *rule.also)}))


def leaks(text: str) -> list[str]:
    """The names of the secret shapes still in ``text``: empty for text that went through :func:`redact`."""
    present = _present(text)
    return [rule.name for rule in _LEAK_SHAPES if rule.applies(present, text) and rule.pattern.search(text)]


def redact_or_withhold(text: str, redactor: Callable[[str], str] = redact) -> str:
    """``redactor(text)``, or :data:`WITHHELD` when it raises or a secret shape survives it.

    The failure is logged without the text (what went wrong and how long the text was), so the log
    cannot leak it either.
    """
    try:
        out = redactor(text)
        found = leaks(out)
    except Exception as exc:  # the fail-safe: whatever went wrong, nothing raw leaves
        log.error("redaction failed (%s); %d characters withheld", type(exc).__name__, len(text))
        return WITHHELD
    if found:
        log.error("redaction left a secret shape (%s); %d characters withheld", ", ".join(found), len(text))
        return WITHHELD
    return out
