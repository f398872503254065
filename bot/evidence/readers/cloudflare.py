"""Cloudflare-generated 52x error pages, pasted as text or HTML, and 52x status lines.

Cloudflare answers 520–526 itself when it cannot get a usable answer from the origin
(cloudflare-docs ``support/troubleshooting/http-status-codes/cloudflare-5xx-errors``; summary in
shared/reference/error-messages.md §8):

=====  ===================================  ==========================
code   subtitle on the page                 cause
=====  ===================================  ==========================
520    Web server is returning an unknown   cdn_bad_origin_response
       error
521    Web server is down                   cdn_origin_unreachable
522    Connection timed out                 cdn_origin_unreachable
523    Origin is unreachable                cdn_origin_unreachable
524    A timeout occurred                   upstream_timeout (connected, no answer in time)
525    SSL handshake failed                 cdn_origin_tls
526    Invalid SSL certificate              cdn_origin_tls
=====  ===================================  ==========================

The page shapes seen in public reports: ``Error 522 Ray ID: 3044bd1a06490f87 • 2016-11-19 15:37:06 UTC``
(text of the older page), ``523 Origin Unreachable`` / ``525 Origin SSL Handshake Error`` (the
``cloudflare-nginx`` pages before 2017), ``HTTP status code 523`` in client errors,
``<title>example.com | 522: Connection timed out</title>`` and
``<span class="code-label">Error code 522</span>`` (HTML, also JSON-escaped inside client exceptions),
``Invalid SSL certificate - Error code 526`` (page copied as text), ``Error reference number: 520``
(the 2017 page), plus ``HTTP/2 522`` status lines and ``cf_ob_info=520:`` cookies in header dumps.
A subtitle alone (``Connection timed out``, ``SSL handshake failed``) is far too common in other
programs' logs to count; it counts only when a Cloudflare marker (``Ray ID``, ``cf-ray``,
``cloudflare``) is in the same input.
"""

from __future__ import annotations

import re
from typing import ClassVar

from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import LinePattern, PatternReader, Reader, Tally

_KIND = {
    520: "cloudflare.bad_origin_response",
    521: "cloudflare.origin_unreachable",
    522: "cloudflare.origin_unreachable",
    523: "cloudflare.origin_unreachable",
    524: "cloudflare.origin_timeout",
    525: "cloudflare.origin_tls",
    526: "cloudflare.origin_tls",
}
_MEANING = {
    520: "the origin sent an empty, unknown or malformed answer",
    521: "the origin refused the connection (web server is down)",
    522: "the TCP connection to the origin timed out",
    523: "the origin is unreachable (no route / bad origin address)",
    524: "the origin accepted the connection but did not answer in time",
    525: "the TLS handshake with the origin failed",
    526: "the origin's certificate is invalid (expired, self-signed or wrong name)",
}
_SUBTITLE = {
    "web server is returning an unknown error": 520,
    "web server is down": 521,
    "origin is unreachable": 523,
    "a timeout occurred": 524,
    "ssl handshake failed": 525,
    "invalid ssl certificate": 526,
}
#: Where the code is written on the line (each form seen on real pages or header dumps).
_CODE = re.compile(
    r"Error (?:code )?(?P<a>52[0-6])\b|\| (?P<b>52[0-6]): |Error reference number: (?P<c>52[0-6])\b"
    r"|HTTP/[0-9.]+ (?P<d>52[0-6])\b|cf_ob_info=(?P<e>52[0-6]):|errorcode_(?P<f>52[0-6])\b"
    r"|(?P<g>52[0-6]):? (?:Web server is|Origin |A timeout occurred|SSL handshake failed"
    r"|Invalid SSL certificate|Connection timed out)|(?:status|return) code:? (?P<h>52[0-6])\b",
    re.I,
)
_SUBTITLE_RX = re.compile("|".join(re.escape(s) for s in _SUBTITLE), re.I)
_MARKER = re.compile(r"Ray ID|cf-ray|cloudflare", re.I)
_RAY = re.compile(r"(?:Ray ID|cf-ray):?\s*(?:<[^>]*>)?\s*(?P<ray>[0-9a-f]{16})", re.I)


class CloudflareErrorPage(Reader):
    """Cloudflare's own 520–526 error pages and status lines: which hop failed between Cloudflare and origin."""

    name = "cloudflare.page"
    title = "Cloudflare 520–526 error pages"
    triggers = (
        r"Error (?:code )?52[0-6]\b",
        r"\| 52[0-6]: ",
        r"Error reference number: 52[0-6]\b",
        r"HTTP/[0-9.]+ 52[0-6]\b",
        r"cf_ob_info=52[0-6]:",
        r"errorcode_52[0-6]\b",
        r"\b52[0-6]:? (?:Web server is|Origin |A timeout occurred|SSL handshake failed|Invalid SSL)",
        r"(?i:status|return) code:? 52[0-6]\b",
        r"(?i:web server is returning an unknown error|web server is down|origin is unreachable"
        r"|a timeout occurred|ssl handshake failed|invalid ssl certificate)",
        r"(?i:ray id|cf-ray)",
    )
    signals: ClassVar[dict[str, Signal]] = {
        "cloudflare.origin_unreachable": Signal(cause="cdn_origin_unreachable", weight=0.85),
        "cloudflare.origin_tls": Signal(cause="cdn_origin_tls", weight=0.85),
        "cloudflare.bad_origin_response": Signal(cause="cdn_bad_origin_response", weight=0.85),
        "cloudflare.origin_timeout": Signal(cause="upstream_timeout", weight=0.8),
    }

    def __init__(self) -> None:
        self.tally = Tally()
        self._pending = Tally()  # subtitles waiting for a Cloudflare marker
        self._marker = False
        self._rays: list[str] = []

    def feed(self, line: str) -> bool:
        if _MARKER.search(line):
            self._marker = True
            ray = _RAY.search(line)
            if ray and ray.group("ray") not in self._rays and len(self._rays) < 5:
                self._rays.append(ray.group("ray"))
        found = _CODE.search(line)
        if found:
            code = int(next(v for v in found.groups() if v))
            self.tally.add(_KIND[code], line, str(code), code=code)
            return False
        subtitle = _SUBTITLE_RX.search(line)
        if subtitle:
            code = _SUBTITLE[subtitle.group(0).lower()]
            self._pending.add(_KIND[code], line, str(code), code=code)
        return False

    def findings(self) -> list[Finding]:
        items = self.tally.items()
        seen_codes = {key for _, key, *_ in items}
        if self._marker:
            # A subtitle with a Ray ID nearby but no code on any line (text copied from the page body).
            items += [item for item in self._pending.items() if item[1] not in seen_codes and not seen_codes]
        out: list[Finding] = []
        for kind, key, count, evidence, data in items:
            code = int(key)
            summary = f"Cloudflare {code}: {_MEANING[code]}"
            if code == 524:
                summary += " (Cloudflare's proxy read timeout, 100–125 s by default)"
            out.append(
                Finding(
                    kind=kind,
                    severity=Severity.CRITICAL,
                    summary=summary,
                    evidence=evidence,
                    data={**data, "count": count, "ray_ids": list(self._rays)},
                    reader=self.name,
                )
            )
        return out


class CloudflaredTunnel(PatternReader):
    """The cloudflared connector (Cloudflare Tunnel): it proxies to the origin from inside the network,
    so an origin it cannot dial is the tunnel's equivalent of a 502/521/522."""

    name = "cloudflared.log"
    title = "cloudflared (Cloudflare Tunnel) connector log"
    patterns = (
        LinePattern(
            "cloudflared.origin_unreachable",
            r"Unable to reach the origin service",
            "{count}× cloudflared could not reach the origin {origin} ({reason})",
            detail=r"dial tcp (?P<origin>\S+?): (?:connect: )?(?P<reason>[^\"\\]+)",
            key="origin",
        ),
    )
    signals: ClassVar[dict[str, Signal]] = {
        "cloudflared.origin_unreachable": Signal(cause="cdn_origin_unreachable", weight=0.85),
    }


READERS = (CloudflareErrorPage, CloudflaredTunnel)
