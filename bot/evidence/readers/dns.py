"""DNS lookups: ``dig``, ``host``, ``nslookup`` and ``getent hosts`` outputs.

What is recognised (texts from BIND 9 ``bin/dig/dig.c``/``dighost.c``/``host.c``/``nslookup.c``,
shared/reference/error-messages.md §7.6, and captures of dig/host/nslookup 9.18 in tests/fixtures/probes):

* dig's header ``;; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1234``; the following flags line
  (``ANSWER: 0``) and question line name what was asked. NOERROR with answers is a healthy lookup;
  NOERROR with no answer (NODATA) is a weak failure (the name exists, the record type does not).
* No answer at all: ``;; connection timed out; no servers could be reached`` (BIND ≤ 9.16) and
  ``;; communications error to 127.0.0.53#53: timed out`` + ``;; no servers could be reached`` (9.18+,
  printed by dig, host and nslookup alike).
* ``host``: ``Host NAME not found: 3(NXDOMAIN)``; ``nslookup``: ``** server can't find NAME: NXDOMAIN``.
* ``getent hosts NAME`` prints nothing (exit 2) when the name does not resolve through NSS; that is
  only readable under a ``### $ getent hosts NAME`` header (an empty block, or ``exit=2``).
* ``dig +short`` prints nothing for NXDOMAIN/SERVFAIL/NODATA: an empty block under a ``dig +short``
  header is a weak hint.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import Reader, Tally, tally_findings

_DIG_STATUS = re.compile(r"->>HEADER<<-[^\n]*status: (?P<rcode>[A-Z]+)")
_DIG_FLAGS = re.compile(r";; flags:[^\n]*ANSWER: (?P<answers>\d+)")
_DIG_QUESTION = re.compile(r"^\s*;(?P<name>[^\s;]+)\s+(?:\d+\s+)?IN\s+(?P<type>[A-Z0-9]+)\s*$")
_COMM_ERROR = re.compile(r";; communications error to (?P<server>\S+?):? (?P<reason>[^\n]*)")
_NSLOOKUP = re.compile(r"\*\* server can't find (?P<name>\S+?):? (?P<rcode>[A-Z]+)")
_HOST = re.compile(r"Host (?P<name>\S+) not found: (?P<num>\d+)\((?P<rcode>[A-Z]+)\)")
_GOT_REPLY = re.compile(r";; Got (?P<rcode>SERVFAIL|REFUSED) reply from (?P<server>[^\s,]+)")
_HOST_OK = re.compile(r"^\s*(?P<name>\S+) has (?:IPv6 )?address (?P<address>\S+)")
_GETENT_HEADER = re.compile(r"getent\s+(?:hosts|ahosts|ahostsv4|ahostsv6)\s+(?P<name>[^\s;|&]+)", re.I)
_SHORT_HEADER = re.compile(r"\bdig\b.*\+short", re.I)
_SHORT_ANSWER = re.compile(r"^\s*(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:]+|[\w.-]+\.)\s*$")
_GETENT_LINE = re.compile(r"^\s*[0-9a-fA-F:.]+\s+\S+")
_EXIT_LINE = re.compile(r"^\s*(?:exit(?:\s*code|\s*status)?\s*[=:]\s*|\$\?\s*=\s*)(?P<code>\d+)\s*$", re.I)

#: Response codes (RFC 1035/6895) → finding kind. Other non-NOERROR codes count as SERVFAIL-like.
_RCODE_KIND = {"NXDOMAIN": "dns.nxdomain", "SERVFAIL": "dns.servfail", "REFUSED": "dns.refused"}

_SUMMARY = {
    "dns.nxdomain": "{name} does not exist in DNS (NXDOMAIN){via}",
    "dns.servfail": "the resolver failed to resolve {name} ({rcode}){via}",
    "dns.refused": "the DNS server refused to answer for {name} (REFUSED){via}",
    "dns.nodata": "{name} exists but has no {type} record (NOERROR, 0 answers)",
    "dns.no_servers": "no DNS server answered ({reason}); lookups fail",
    "dns.server_error": "DNS server {server} failed ({reason}); another server may have answered",
    "dns.getent_not_found": "{name} does not resolve through the system resolver (getent hosts printed nothing)",
    "dns.short_empty": "dig +short printed nothing: NXDOMAIN, SERVFAIL or no record for the name",
    "dns.resolved": "{name} resolves ({detail})",
}


class DnsLookup(Reader):
    """Outcomes of DNS lookup commands: NXDOMAIN, SERVFAIL, REFUSED, no server reachable, or resolved."""

    name = "dns.lookup"
    title = "DNS lookups (dig, host, nslookup, getent hosts)"
    triggers = (
        r"->>HEADER<<-[^\n]*status: [A-Z]+",
        r";; connection timed out; no servers could be reached",
        r";; no servers could be reached",
        r";; communications error to ",
        r"\*\* server can't find \S+",
        r"Host \S+ not found: \d+\([A-Z]+\)",
        r";; Got (?:SERVFAIL|REFUSED) reply from ",
        r"(?m:^[ \t]*\S+ has (?:IPv6 )?address \S+)",
    )
    header = r"(?:^|[\s$])(?:dig|getent\s+a?hosts\w*)\b"
    signals: ClassVar[dict[str, Signal]] = {
        "dns.nxdomain": Signal(cause="dns_failure", weight=0.7),
        "dns.servfail": Signal(cause="dns_failure", weight=0.7),
        "dns.refused": Signal(cause="dns_failure", weight=0.55),
        "dns.no_servers": Signal(cause="dns_failure", weight=0.65),
        "dns.server_error": Signal(cause="dns_failure", weight=0.2),
        "dns.nodata": Signal(cause="dns_failure", weight=0.4),
        "dns.getent_not_found": Signal(cause="dns_failure", weight=0.5),
        "dns.short_empty": Signal(cause="dns_failure", weight=0.3),
    }

    def __init__(self) -> None:
        self.tally = Tally()
        self._dig: dict[str, Any] | None = None
        self._comm_errors: list[tuple[str, str, str]] = []
        self._block_kind: str | None = None
        self._block_name = ""
        self._block_lines = 0
        self._block_exit: int | None = None
        self._block_header = ""

    # -- blocks ---------------------------------------------------------------------------------
    def start_block(self, header: str) -> None:
        self._finish_dig()
        getent = _GETENT_HEADER.search(header)
        if getent:
            self._block_kind, self._block_name = "getent", getent.group("name")
        elif _SHORT_HEADER.search(header):
            self._block_kind, self._block_name = "short", ""
        else:
            self._block_kind = "dig"
        self._block_lines = 0
        self._block_exit = None
        self._block_header = "### " + header

    def end_block(self) -> None:
        self._finish_dig()
        self._finish_comm_errors()
        if self._block_kind == "getent":
            failed = self._block_exit not in (None, 0) or (self._block_exit is None and self._block_lines == 0)
            if failed:
                self.tally.add(
                    "dns.getent_not_found",
                    self._block_header,
                    self._block_name,
                    name=self._block_name,
                    exit=self._block_exit,
                )
        elif self._block_kind == "short" and self._block_lines == 0 and self._block_exit in (None, 0):
            self.tally.add("dns.short_empty", self._block_header)
        self._block_kind = None

    # -- lines ----------------------------------------------------------------------------------
    def feed(self, line: str) -> bool:
        exit_line = _EXIT_LINE.match(line)
        if exit_line:
            self._block_exit = int(exit_line.group("code"))
            return False
        if line.strip():
            self._block_lines += 1
        if self._block_kind == "getent" and _GETENT_LINE.match(line):
            self.tally.add("dns.resolved", line, self._block_name, name=self._block_name, detail="getent")
            return False
        if self._block_kind == "short" and _SHORT_ANSWER.match(line):
            self.tally.add("dns.resolved", line, "+short", name="the name", detail=f"dig +short: {line.strip()}")
            return False

        header = _DIG_STATUS.search(line)
        if header:
            self._finish_dig()
            self._dig = {"rcode": header.group("rcode"), "line": line, "answers": None, "name": "?", "type": "A"}
            return True
        if self._dig is not None:
            flags = _DIG_FLAGS.search(line)
            if flags:
                self._dig["answers"] = int(flags.group("answers"))
                return True
            question = _DIG_QUESTION.match(line)
            if question:
                self._dig.update(name=question.group("name").rstrip("."), type=question.group("type"))
                self._finish_dig()
                return False
            if line.strip() == "" or line.lstrip().startswith(";"):
                return True
            self._finish_dig()

        if "no servers could be reached" in line:
            reason = self._comm_errors[-1][1] if self._comm_errors else "connection timed out"
            servers = sorted({server for server, _, _ in self._comm_errors})
            self.tally.add(
                "dns.no_servers", self._comm_errors[0][2] if self._comm_errors else line, reason=reason, servers=servers
            )
            self._comm_errors = []
            return False
        comm = _COMM_ERROR.search(line)
        if comm:
            self._comm_errors.append((comm.group("server"), comm.group("reason").strip(), line))
            return True
        if self._comm_errors:
            # The attempts were followed by something else (an answer from another server, or dig's
            # banner before its final "no servers" line): keep waiting within the block.
            if line.strip() == "" or line.lstrip().startswith(";"):
                return True
            self._finish_comm_errors()

        nslookup = _NSLOOKUP.search(line)
        if nslookup:
            self._rcode(nslookup.group("rcode"), nslookup.group("name").rstrip("."), line, via="nslookup")
            return False
        host = _HOST.search(line)
        if host:
            self._rcode(host.group("rcode"), host.group("name").rstrip("."), line, via="host")
            return False
        got = _GOT_REPLY.search(line)
        if got:
            server = got.group("server")
            self.tally.add("dns.server_error", line, server, server=server, reason=got.group("rcode"))
            return False
        host_ok = _HOST_OK.match(line)
        if host_ok:
            name = host_ok.group("name").rstrip(".")
            self.tally.add("dns.resolved", line, name, name=name, detail=f"host: {host_ok.group('address')}")
        return False

    # -- internals ------------------------------------------------------------------------------
    def _finish_dig(self) -> None:
        dig, self._dig = self._dig, None
        if dig is None:
            return
        rcode, name, line = dig["rcode"], dig["name"], dig["line"]
        if rcode == "NOERROR":
            if dig["answers"] == 0:
                self.tally.add("dns.nodata", line, name, name=name, type=dig["type"], rcode=rcode)
            else:
                self.tally.add("dns.resolved", line, name, name=name, detail=f"dig: {dig['answers']} answer(s)")
            return
        self._rcode(rcode, name, line, via="dig")

    def _finish_comm_errors(self) -> None:
        for server, reason, line in self._comm_errors:
            self.tally.add("dns.server_error", line, server, server=server, reason=reason)
        self._comm_errors = []

    def _rcode(self, rcode: str, name: str, line: str, via: str) -> None:
        kind = _RCODE_KIND.get(rcode, "dns.servfail")
        self.tally.add(kind, line, name, name=name, rcode=rcode, via=via)

    def findings(self) -> list[Finding]:
        self._finish_dig()
        self._finish_comm_errors()
        items = self.tally.items()
        resolved = {key for kind, key, _, _, _ in items if kind == "dns.resolved"}

        def describe(kind: str, _key: str, count: int, data: dict[str, Any]) -> tuple[str, Severity] | None:
            if kind == "dns.server_error" and resolved:
                return None  # one server failed but the lookup went on and resolved
            values = {"name": "?", "rcode": "?", "type": "A", "reason": "?", "server": "?", "detail": "", **data}
            via = values.get("via")
            values["via"] = f" [{via}]" if via else ""
            summary = _SUMMARY[kind].format_map(values)
            if count > 1:
                summary += f" ({count}×)"
            if kind == "dns.resolved":
                return summary, Severity.OK
            if kind in {"dns.nodata", "dns.server_error", "dns.short_empty"}:
                return summary, Severity.WARNING
            return summary, Severity.CRITICAL

        return tally_findings(self.name, items, describe)


READERS = (DnsLookup,)
