"""The confirmation probe over httpx: re-probe a service URL, time each phase, name the failing layer.

Each attempt resolves the URL's host itself (that is the ``dns`` phase, and where the address policy
is applied), then connects to the address it checked, not to the name, so a second lookup cannot
swap in another address: the request goes to ``scheme://<address>:port/...`` with the original
``Host`` header and, for HTTPS, the original name as SNI and for certificate verification (httpcore's
``sni_hostname`` request extension). The connect, TLS and first-byte times come from httpx's
``trace`` request extension (httpcore events ``connection.connect_tcp.*``, ``connection.start_tls.*``,
``http11.receive_response_headers.*``). No connection is reused between attempts; proxies from the
environment are ignored (``trust_env=False``): the probe measures the path from the bot to the service.

Address policy (:func:`address_refusal`, :func:`host_refusal`): no probe goes to a link-local address
(169.254.0.0/16, fe80::/10) or a cloud metadata endpoint (by name or address), and redirects are
followed by hand, up to ``max_redirects``, none of them to a loopback address unless the URL itself
was loopback (every address of its host a loopback one). A refused URL or redirect ends the probe
with verdict ``refused`` and no connection to the refused address.

``timeout`` caps each attempt as a whole (like ``curl --max-time``), name resolution included; the
phase in progress when it runs out names the layer. httpx and OS exceptions become layers here, in
:func:`classify`, and nowhere else.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import httpx

from bot.core.probe import Layer, ProbeAttempt, ProbeReport, Timings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Resolves (host, port) to IP addresses in the order to try them; raises ``socket.gaierror``.
Resolver = Callable[[str, int], Awaitable[list[str]]]

LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
#: Cloud metadata endpoints that are not link-local: AWS IMDS over IPv6, Alibaba Cloud, Oracle Cloud Classic.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
    }
)
#: RFC 6761 §6.4: names under ``.invalid`` never resolve; answered here without asking any server.
_RESERVED_INVALID = re.compile(r"(?:^|\.)invalid\.?$", re.I)
_SSL_LOCATION = re.compile(r"\s*\(_ssl\.c:\d+\)$")
MAX_BODY = 64 * 1024


# --- address policy --------------------------------------------------------------------------------


def _unwrap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(address: IPAddress) -> bool:
    """Loopback, or the unspecified address (connecting to 0.0.0.0 or :: reaches this host too)."""
    address = _unwrap(address)
    return address.is_loopback or address.is_unspecified


def host_refusal(host: str) -> str | None:
    """Why a URL with this host name may not be probed (a metadata service name), or None."""
    name = host.rstrip(".").lower()
    if name in METADATA_HOSTS:
        return f"{name} is a cloud metadata endpoint"
    return None


def address_refusal(addresses: Sequence[IPAddress], *, loopback_allowed: bool) -> str | None:
    """Why these resolved addresses may not be probed, or None when every one of them may.

    Any forbidden address refuses the whole host: a name that resolves to a public and a metadata
    address is not probed at all.
    """
    for raw in addresses:
        address = _unwrap(raw)
        if address in METADATA_ADDRESSES:
            return f"{address} is a cloud metadata address"
        if any(address in net for net in LINK_LOCAL):
            return f"{address} is a link-local address"
        if is_loopback(address) and not loopback_allowed:
            return f"{address} is a loopback address and the probed URL was not loopback"
    return None


def url_refusal(url: httpx.URL) -> str | None:
    """Why a URL (the probed one or a redirect's target) may not be requested, judged before any lookup."""
    if url.scheme not in ("http", "https"):
        return f"only http and https URLs are probed, not {url.scheme or 'a relative URL'!r}"
    if not url.host:
        return "the URL has no host"
    return host_refusal(url.raw_host.decode("ascii"))


async def system_resolver(host: str, port: int) -> list[str]:
    """The OS resolver (getaddrinfo), addresses deduplicated in the OS's order of preference."""
    if _RESERVED_INVALID.search(host):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (reserved name, RFC 6761)")
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in out:
            out.append(address)
    return out


# --- exceptions → layers ---------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)


def _text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return _SSL_LOCATION.sub("", str(exc))
    if isinstance(exc, socket.gaierror):
        return str(exc.strerror or exc)
    code = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and isinstance(code, int) and code > 0:
        return f"{os.strerror(code)} (errno {code})"
    return str(exc) or type(exc).__name__


def classify(exc: BaseException, phase: str | None) -> tuple[Layer, str]:
    """The failing layer and a one-line error text for an exception raised during ``phase``.

    ``phase`` is the step that had started and not completed (``resolve``, ``connect_tcp``,
    ``start_tls``, ``send_request_headers``, ``receive_response_headers`` …) or None.
    """
    chain = list(_chain(exc))
    if any(isinstance(e, socket.gaierror) for e in chain) or phase == "resolve":
        gai = next((e for e in chain if isinstance(e, socket.gaierror)), exc)
        text = "name resolution timed out" if isinstance(exc, TimeoutError) else _text(gai)
        return "dns", text
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        if phase == "connect_tcp":
            return "connect_timeout", "TCP connect timed out"
        if phase == "start_tls":
            return "tls", "TLS handshake timed out"
        return "read_timeout", "no answer in time after the request was sent"
    tls_error = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
    if tls_error is not None or phase == "start_tls":
        return "tls", _text(tls_error or chain[-1])
    if isinstance(exc, httpx.ConnectError) or phase == "connect_tcp":
        for e in chain:
            if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED:
                return "connect_refused", _text(e)
        for e in chain:
            if getattr(e, "errno", None) == errno.ETIMEDOUT:
                return "connect_timeout", _text(e)
        errors = [e for e in chain if isinstance(e, OSError) and getattr(e, "errno", None)]
        return "connect_error", _text(errors[0] if errors else chain[-1])
    if isinstance(exc, (httpx.TransportError, httpx.DecodingError, httpx.TooManyRedirects, OSError)):
        return "protocol", _text(chain[-1] if isinstance(exc, httpx.TransportError) else exc)
    raise exc


# --- one attempt -----------------------------------------------------------------------------------


class _Recorder:
    """Receives httpcore's trace events and keeps the phase times of the current request."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.phase: str | None = None
        self.hop_start = 0.0
        self.dns: float | None = None
        self.connect: float | None = None
        self.tls: float | None = None
        self.first_byte: float | None = None

    def now(self) -> float:
        return round(time.perf_counter() - self.start, 6)

    def new_hop(self) -> None:
        self.hop_start = self.now()
        self.dns = self.connect = self.tls = self.first_byte = None
        self.phase = None

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        _prefix, _, rest = event.partition(".")
        step, _, state = rest.rpartition(".")
        if state == "started":
            self.phase = step
            return
        if state != "complete":
            return  # "failed": the phase stays the one in progress
        self.phase = None
        if step == "connect_tcp":
            self.connect = self.now()
        elif step == "start_tls":
            self.tls = self.now()
        elif step == "receive_response_headers":
            self.first_byte = self.now()

    def timings(self, redirected: bool) -> Timings:
        return Timings(
            dns=self.dns,
            connect=self.connect,
            tls=self.tls,
            first_byte=self.first_byte,
            total=self.now(),
            redirect=self.hop_start if redirected else None,
        )


class HttpxProber:
    """:class:`~bot.core.ports.Prober` over httpx: ``attempts`` requests ``interval`` seconds apart."""

    def __init__(
        self,
        attempts: int = 3,
        interval: float = 1.0,
        timeout: float = 5.0,
        *,
        max_redirects: int = 5,
        verify: ssl.SSLContext | bool = True,
        resolver: Resolver = system_resolver,
        user_agent: str = "incident-bot-probe",
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts = attempts
        self.interval = interval
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.verify = verify
        self.resolver = resolver
        self.user_agent = user_agent

    async def probe(self, url: str) -> ProbeReport:
        done: list[ProbeAttempt] = []
        async with httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            verify=self.verify,
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": self.user_agent, "Cache-Control": "no-cache"},
        ) as client:
            for number in range(self.attempts):
                if number:
                    await asyncio.sleep(self.interval)
                attempt = await self._attempt(client, url)
                done.append(attempt)
                if attempt.layer == "refused":
                    break
        return ProbeReport(url=url, attempts=tuple(done))

    async def _attempt(self, client: httpx.AsyncClient, url: str) -> ProbeAttempt:
        rec = _Recorder(time.perf_counter())
        state: dict[str, Any] = {"redirects": []}
        try:
            async with asyncio.timeout(self.timeout):
                return await self._follow(client, url, rec, state)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return self._result(url, "refused", rec, state, error=f"not a probe-able URL: {exc}")
        except Exception as exc:  # mapped to a layer by classify(); anything it does not know re-raises
            layer, text = classify(exc, rec.phase)
            return self._result(url, layer, rec, state, error=text)

    async def _follow(self, client: httpx.AsyncClient, url: str, rec: _Recorder, state: dict[str, Any]) -> ProbeAttempt:
        current = httpx.URL(url)
        loopback_allowed: bool | None = None
        for _hop in range(self.max_redirects + 1):
            host = current.raw_host.decode("ascii")
            refusal = url_refusal(current)
            if refusal:
                what = f"redirect to {current}: " if state["redirects"] else ""
                return self._result(url, "refused", rec, state, error=f"{what}{refusal}")
            rec.new_hop()
            port = current.port or (443 if current.scheme == "https" else 80)
            rec.phase = "resolve"
            resolved = await self.resolver(host, port)
            rec.phase = None
            rec.dns = rec.now()
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]
            if not addresses:
                raise socket.gaierror(socket.EAI_NONAME, "no address")
            if loopback_allowed is None:
                loopback_allowed = all(is_loopback(a) for a in addresses)
            state["address"], state["port"] = str(addresses[0]), port
            refusal = address_refusal(addresses, loopback_allowed=loopback_allowed)
            if refusal:
                what = f"redirect to {current}: " if state["redirects"] else ""
                return self._result(url, "refused", rec, state, error=f"{what}{refusal}")
            extensions: dict[str, Any] = {"trace": rec.trace}
            if current.scheme == "https":
                extensions["sni_hostname"] = host
            request = client.build_request(
                "GET",
                current.copy_with(host=str(addresses[0])),
                headers={"Host": current.netloc.decode("ascii")},
                extensions=extensions,
            )
            response = await client.send(request, stream=True)
            try:
                received = 0
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                    if received >= MAX_BODY:
                        break
            finally:
                await response.aclose()
            state["status"], state["reason"] = response.status_code, response.reason_phrase
            state["retry_after"] = response.headers.get("retry-after")
            location = response.headers.get("location")
            if response.is_redirect and location:
                current = current.join(location)
                state["redirects"].append(str(current))
                continue
            layer: Layer = "http_status" if response.status_code >= 500 else "ok"
            return self._result(url, layer, rec, state)
        return self._result(url, "ok", rec, state, error=f"stopped after {self.max_redirects} redirects")

    def _result(self, url: str, layer: Layer, rec: _Recorder, state: dict[str, Any], error: str = "") -> ProbeAttempt:
        has_status = layer in ("ok", "http_status")
        return ProbeAttempt(
            url=url,
            layer=layer,
            status=state.get("status") if has_status else None,
            reason=state.get("reason", "") if has_status else "",
            retry_after=state.get("retry_after") if has_status else None,
            address=state.get("address"),
            port=state.get("port"),
            timings=rec.timings(bool(state["redirects"])),
            error=error,
            redirects=tuple(state["redirects"]),
        )
