"""Certificates and TLS handshakes as seen by ``openssl x509`` and ``openssl s_client``.

* ``openssl x509 -noout -enddate`` prints ``notAfter=Nov  1 00:00:00 2026 GMT`` (``apps/x509.c``,
  ``ASN1_TIME_print_ex``; two spaces before a one-digit day), or ``notAfter=2026-11-01 00:00:00Z``
  with ``-dateopt iso_8601``. The date is compared with the current time: expired → critical,
  within 14 days → warning (no cause: it still works). ``s_client`` prints the same ``notAfter=``
  after a verify error and ``v:NotBefore: ...; NotAfter: ...`` per chain certificate (OpenSSL 3).
* ``-checkend N`` prints ``Certificate will expire`` / ``Certificate will not expire``; under a header
  whose command has ``-checkend 0`` "will expire" means expired now.
* ``openssl s_client``: ``verify error:num=10:certificate has expired``, ``Verify return code: 10
  (certificate has expired)``, ``18 (self-signed certificate)``, ``19`` (self-signed in chain),
  ``20``/``21`` (issuer unknown: often the *client's* trust store), ``62`` (hostname mismatch),
  ``0 (ok)``; handshake failures as OpenSSL error-stack lines ``<hex>:error:<hex>:SSL routines:...``
  and ``connect:errno=111``.

An expired or otherwise invalid certificate on the upstream is upstream_tls_error; behind Cloudflare
(status 525/526) the same evidence means cdn_origin_tls, which only the status can tell: readers do
not see the status, so the summary says so. Error-stack lines of nginx's own log (``SSL_do_handshake()
failed (SSL: error:...)``) are the nginx reader's; the trigger here requires the command-line layout.
Captured outputs: tests/fixtures/probes/openssl_*.txt (OpenSSL 3.0).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import Reader, Tally, tally_findings

#: Certificates expiring sooner than this are worth a warning.
EXPIRY_WARNING = timedelta(days=14)

_MONTHS = {
    m: i
    for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)
}
_NOT_AFTER = re.compile(
    r"(?:notAfter=|NotAfter: ?)(?:(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d)(?:\.\d+)? "
    r"(?P<year>\d{4})(?: GMT)?|(?P<iso>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\dZ?))"
)
_VERIFY = re.compile(r"(?:Verify return code: |verify error:num=)(?P<code>\d+)[:( ]*(?P<text>[^)\n]*)")
_CHECKEND_HEADER = re.compile(r"-checkend\s+(?P<seconds>-?\d+)")
_SSL_STACK = re.compile(r"error:[0-9A-Fa-f]{8}:SSL routines:(?:[\w]*:)?(?P<reason>[^:\n]+)")

#: X509_V_ERR_* codes (include/openssl/x509_vfy.h) → finding kind.
_VERIFY_KIND = {
    9: "tls.cert_not_yet_valid",
    10: "tls.cert_expired",
    18: "tls.cert_self_signed",
    19: "tls.cert_self_signed",
    20: "tls.cert_untrusted",
    21: "tls.cert_untrusted",
    2: "tls.cert_untrusted",
    62: "tls.cert_name_mismatch",
    23: "tls.cert_revoked",
}

_SUMMARY = {
    "tls.cert_expired": "certificate expired ({detail}): upstream_tls_error, or cdn_origin_tls when Cloudflare "
    "answers 525/526",
    "tls.cert_expiring": "certificate expires soon ({detail})",
    "tls.cert_valid": "certificate still valid ({detail})",
    "tls.cert_not_yet_valid": "certificate not valid yet ({detail})",
    "tls.cert_self_signed": "self-signed certificate ({detail}): rejected by verifying clients and by "
    "Cloudflare Full (strict)",
    "tls.cert_untrusted": "certificate chain not trusted by this client ({detail}); check the intermediate "
    "chain or the client's CA store",
    "tls.cert_name_mismatch": "certificate does not match the host name ({detail})",
    "tls.cert_revoked": "certificate revoked ({detail})",
    "tls.handshake_failed": "TLS handshake failed: {detail}",
    "tls.connect_failed": "openssl could not connect ({detail})",
    "tls.checkend_expire": "openssl -checkend: the certificate will expire within the checked window",
    "tls.verified": "TLS handshake and certificate verification succeeded",
}


def utcnow() -> datetime:
    """The instant certificate dates are compared with (tests replace this module attribute)."""
    return datetime.now(UTC)


def parse_not_after(line: str) -> datetime | None:
    """The ``notAfter`` instant printed on ``line`` (either OpenSSL layout), or None."""
    found = _NOT_AFTER.search(line)
    if not found:
        return None
    try:
        if found.group("iso"):
            text = found.group("iso").rstrip("Z").replace("T", " ")
            return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        month = _MONTHS.get(found.group("mon"))
        if month is None:
            return None
        hour, minute, second = (int(x) for x in found.group("time").split(":"))
        return datetime(int(found.group("year")), month, int(found.group("day")), hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


class TlsCheck(Reader):
    """Certificate dates and verification results from openssl x509 / s_client outputs."""

    name = "tls.openssl"
    title = "TLS certificates (openssl x509 -enddate/-checkend, openssl s_client)"
    triggers = (
        r"notAfter=(?:[A-Z][a-z][a-z] +\d|\d{4}-)",
        r"NotAfter: [A-Z][a-z][a-z] +\d",
        r"Verify return code: \d+",
        r"verify error:num=\d+",
        r"Certificate will (?:not )?expire",
        r"(?m:(?:^|[ \t>])[0-9A-Fa-f]{5,}:error:[0-9A-Fa-f]{8}:SSL routines:)",
        r"connect:errno=\d+",
    )
    header = r"openssl\s+(?:x509|s_client)"
    signals: ClassVar[dict[str, Signal]] = {
        "tls.cert_expired": Signal(cause="upstream_tls_error", weight=0.7),
        "tls.cert_not_yet_valid": Signal(cause="upstream_tls_error", weight=0.6),
        "tls.cert_self_signed": Signal(cause="upstream_tls_error", weight=0.45),
        "tls.cert_untrusted": Signal(cause="upstream_tls_error", weight=0.3),
        "tls.cert_name_mismatch": Signal(cause="upstream_tls_error", weight=0.55),
        "tls.cert_revoked": Signal(cause="upstream_tls_error", weight=0.6),
        "tls.handshake_failed": Signal(cause="upstream_tls_error", weight=0.5),
        "tls.connect_failed": Signal(cause="upstream_down", weight=0.45),
    }

    def __init__(self) -> None:
        self.tally = Tally()
        self._checkend: int | None = None

    def start_block(self, header: str) -> None:
        found = _CHECKEND_HEADER.search(header)
        self._checkend = int(found.group("seconds")) if found else None

    def end_block(self) -> None:
        self._checkend = None

    def feed(self, line: str) -> bool:
        not_after = parse_not_after(line)
        if not_after is not None:
            self._expiry(not_after, line)
            return False
        verify = _VERIFY.search(line)
        if verify:
            code = int(verify.group("code"))
            text = verify.group("text").strip().rstrip(")") or f"verify code {code}"
            if code == 0:
                self.tally.add("tls.verified", line)
            else:
                kind = _VERIFY_KIND.get(code, "tls.cert_untrusted" if code < 50 else "tls.handshake_failed")
                self.tally.add(kind, line, detail=f"{code}: {text}", verify_code=code)
            return False
        if "Certificate will not expire" in line:
            self.tally.add("tls.cert_valid", line, detail="beyond the -checkend window")
            return False
        if "Certificate will expire" in line:
            if self._checkend is not None and self._checkend <= 0:
                self.tally.add("tls.cert_expired", line, detail="openssl -checkend 0")
            else:
                self.tally.add("tls.checkend_expire", line, checkend=self._checkend)
            return False
        stack = _SSL_STACK.search(line)
        if stack:
            self.tally.add("tls.handshake_failed", line, detail=stack.group("reason").strip())
            return False
        errno = re.search(r"connect:errno=(\d+)", line)
        if errno:
            self.tally.add("tls.connect_failed", line, detail=f"errno {errno.group(1)}", errno=int(errno.group(1)))
        return False

    def _expiry(self, not_after: datetime, line: str) -> None:
        now = utcnow()
        stamp = not_after.strftime("%Y-%m-%d %H:%M UTC")
        if not_after <= now:
            days = (now - not_after).days
            self.tally.add(
                "tls.cert_expired", line, detail=f"notAfter {stamp}, {days} days ago", not_after=not_after.isoformat()
            )
        elif not_after - now <= EXPIRY_WARNING:
            days = (not_after - now).days
            self.tally.add(
                "tls.cert_expiring", line, detail=f"notAfter {stamp}, in {days} days", not_after=not_after.isoformat()
            )
        else:
            self.tally.add("tls.cert_valid", line, detail=f"notAfter {stamp}", not_after=not_after.isoformat())

    def findings(self) -> list[Finding]:
        items = self.tally.items()
        failed = {kind for kind, *_ in items} & {"tls.handshake_failed", "tls.connect_failed"}

        def describe(kind: str, _key: str, _count: int, data: dict[str, Any]) -> tuple[str, Severity] | None:
            if kind == "tls.verified" and failed:
                return None  # s_client prints "Verify return code: 0 (ok)" even when no certificate came
            summary = _SUMMARY[kind].format_map({"detail": "", **data})
            if kind in {"tls.verified", "tls.cert_valid"}:
                return summary, Severity.OK
            if kind in {"tls.cert_expiring", "tls.checkend_expire", "tls.cert_untrusted"}:
                return summary, Severity.WARNING
            return summary, Severity.CRITICAL

        return tally_findings(self.name, items, describe)


READERS = (TlsCheck,)
