"""The confirmation probe against real servers on 127.0.0.1: statuses, blips, refused and silent ports, TLS.

Every server here is started by a fixture on 127.0.0.1; the only names looked up are ``localhost``
(/etc/hosts) and names under ``.invalid``, which the probe answers itself (RFC 6761). Redirects from a
non-loopback URL to loopback cannot be staged without a second, non-loopback address, so that rule is
pinned on the decision function, and the probe's wiring of it on a redirect to a metadata address.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.adapters.probe import (
    HttpxProber,
    address_refusal,
    classify,
    host_refusal,
    is_loopback,
    system_resolver,
)
from bot.core.models import Severity
from bot.core.ports import Prober
from bot.core.probe import LAYER_KINDS, PROBE_SIGNALS, ProbeAttempt, ProbeReport
from bot.diagnosis.catalog import CATALOG
from bot.diagnosis.engine import diagnose

FAST = {"attempts": 3, "interval": 0.02, "timeout": 2.0}


# --- servers ---------------------------------------------------------------------------------------


@dataclass
class Server:
    base: str
    port: int
    hosts: dict[str, str] = field(default_factory=dict)
    blips: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        path = parts.path
        with state.lock:
            state.hosts[path] = self.headers.get("Host", "")
        if path == "/ok":
            self._answer(200, b"fine\n")
        elif path == "/502":
            self._answer(502, b"<html>502 Bad Gateway</html>\n")
        elif path == "/503":
            self._answer(503, b"maintenance\n", {"Retry-After": "120"})
        elif path.startswith("/blip/"):
            with state.lock:
                seen = state.blips[path] = state.blips.get(path, 0) + 1
            self._answer(502 if seen == 1 else 200)
        elif path == "/redirect":
            self._answer(302, headers={"Location": query["to"][0]})
        elif path == "/loop":
            self._answer(301, headers={"Location": "/loop"})
        else:
            self._answer(404)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: Server | None = None, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tls = tls
        self.state = state or Server("", 0)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except OSError:  # the client rejected our certificate: that is the point of the TLS test
            return
        try:
            self.RequestHandlerClass(wrapped, client_address, self)
        finally:
            wrapped.close()


def _serve(tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    httpd = _HTTPServer(tls=tls)
    port = httpd.server_address[1]
    assert isinstance(port, int)
    httpd.state = Server(f"{'https' if tls else 'http'}://127.0.0.1:{port}", port)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def http_server() -> Iterator[Server]:
    yield from _serve()


@pytest.fixture(scope="module")
def other_server() -> Iterator[Server]:
    yield from _serve()


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for localhost and 127.0.0.1, made with ``cryptography``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "incident-bot probe test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Cert(cert_path, key_path)


@pytest.fixture(scope="module")
def tls_server(self_signed: Cert) -> Iterator[Server]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(self_signed.cert, self_signed.key)
    yield from _serve(ctx)


@pytest.fixture
def closed_port() -> int:
    """A port that was just free on 127.0.0.1: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A socket that listens (the kernel completes the handshake) but never accepts nor answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A listener whose accept queue is full: the kernel drops new SYNs, so a connect times out."""
    listener = socket.socket()
    clients: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        for _ in range(16):
            client = socket.socket()
            clients.append(client)
            client.settimeout(0.2)
            try:
                client.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            pytest.fail("the kernel accepted 16 connections past a full backlog (net.ipv4.tcp_abort_on_overflow?)")
        yield port
    finally:
        for client in clients:
            client.close()
        listener.close()


def _ordered(attempt: ProbeAttempt, *, tls: bool) -> None:
    t = attempt.timings
    assert t.dns is not None and t.connect is not None and t.first_byte is not None
    if tls:
        assert t.tls is not None
        assert 0 <= t.dns <= t.connect <= t.tls <= t.first_byte <= t.total
    else:
        assert t.tls is None
        assert 0 <= t.dns <= t.connect <= t.first_byte <= t.total


# --- statuses --------------------------------------------------------------------------------------


async def test_healthy_url_is_ok_with_ordered_phase_timings(http_server: Server) -> None:
    prober: Prober = HttpxProber(**FAST)
    report = await prober.probe(f"{http_server.base}/ok")
    assert report.verdict == "ok"
    assert [a.layer for a in report.attempts] == ["ok", "ok", "ok"]
    for attempt in report.attempts:
        assert attempt.status == 200
        assert attempt.address == "127.0.0.1"
        _ordered(attempt, tls=False)
    (finding,) = report.findings()
    assert finding.kind == "probe.ok"
    assert finding.severity is Severity.OK
    assert "probe.ok" not in PROBE_SIGNALS


async def test_502_on_every_attempt_is_failing_http_5xx_without_a_cause_signal(http_server: Server) -> None:
    report = await HttpxProber(**FAST).probe(f"{http_server.base}/502")
    assert report.verdict == "failing"
    assert report.status == 502
    assert {a.layer for a in report.attempts} == {"http_status"}
    assert report.attempts[0].reason == "Bad Gateway"
    _ordered(report.attempts[0], tls=False)
    (finding,) = report.findings()
    assert finding.kind == "probe.http_5xx"
    assert finding.severity is Severity.CRITICAL
    assert finding.data["statuses"] == [502]
    assert finding.data["count"] == 3
    assert len(finding.evidence) == 3
    assert "HTTP 502 Bad Gateway from 127.0.0.1" in finding.evidence[0]
    assert "probe.http_5xx" not in PROBE_SIGNALS


async def test_503_records_retry_after(http_server: Server) -> None:
    report = await HttpxProber(attempts=1, timeout=2.0).probe(f"{http_server.base}/503")
    (attempt,) = report.attempts
    assert (attempt.layer, attempt.status, attempt.retry_after) == ("http_status", 503, "120")
    (finding,) = report.findings()
    assert finding.data["retry_after"] == "120"
    assert "Retry-After: 120" in finding.summary


async def test_a_4xx_answer_is_not_a_failure(http_server: Server) -> None:
    report = await HttpxProber(attempts=1, timeout=2.0).probe(f"{http_server.base}/missing")
    assert report.verdict == "ok"
    assert report.attempts[0].status == 404


async def test_502_then_200_is_a_blip_marked_recovered(http_server: Server) -> None:
    report = await HttpxProber(**FAST).probe(f"{http_server.base}/blip/{uuid.uuid4().hex}")
    assert [(a.layer, a.status) for a in report.attempts] == [("http_status", 502), ("ok", 200), ("ok", 200)]
    assert report.verdict == "recovered"
    (finding,) = report.findings()
    assert finding.kind == "probe.recovered"
    assert finding.severity is Severity.WARNING
    assert "HTTP 502" in finding.summary and "recovered" in finding.summary
    assert finding.data["failures"] == 1
    assert len(finding.evidence) == 3
    assert "probe.recovered" not in PROBE_SIGNALS


async def test_host_header_and_address_when_probing_by_name(http_server: Server) -> None:
    """The name is resolved once and the connection goes to that address, with the URL's Host header."""
    report = await HttpxProber(attempts=1, timeout=2.0).probe(f"http://localhost:{http_server.port}/ok")
    (attempt,) = report.attempts
    assert attempt.layer == "ok"
    assert attempt.address == "127.0.0.1"
    assert http_server.hosts["/ok"] == f"localhost:{http_server.port}"


# --- transport failures ----------------------------------------------------------------------------


async def test_closed_port_is_connect_refused_pointing_at_upstream_down(closed_port: int) -> None:
    report = await HttpxProber(**FAST).probe(f"http://127.0.0.1:{closed_port}/")
    assert report.verdict == "failing"
    for attempt in report.attempts:
        assert attempt.layer == "connect_refused"
        assert attempt.status is None
        assert "Connection refused" in attempt.error
        assert attempt.timings.dns is not None and attempt.timings.connect is None
        assert attempt.timings.dns <= attempt.timings.total
    (finding,) = report.findings()
    assert finding.kind == "probe.connect_refused"
    assert PROBE_SIGNALS[finding.kind].cause == "upstream_down"
    assert finding.data["port"] == closed_port

    ranked = diagnose(report.findings(), 502, PROBE_SIGNALS)
    assert ranked.top is not None and ranked.top.id == "upstream_down"
    assert ranked.top.evidence[0].startswith("probe 1/3 GET")


async def test_listener_that_never_answers_is_a_read_timeout(silent_listener: int) -> None:
    report = await HttpxProber(attempts=1, timeout=0.5).probe(f"http://127.0.0.1:{silent_listener}/")
    (attempt,) = report.attempts
    assert attempt.layer == "read_timeout"
    t = attempt.timings
    assert t.dns is not None and t.connect is not None and t.first_byte is None
    assert t.dns <= t.connect <= t.total
    assert 0.4 <= t.total < 2.0
    (finding,) = report.findings()
    assert finding.kind == "probe.read_timeout"
    assert PROBE_SIGNALS[finding.kind].cause == "upstream_timeout"


async def test_full_accept_backlog_is_a_connect_timeout(full_backlog: int) -> None:
    report = await HttpxProber(attempts=1, timeout=0.5).probe(f"http://127.0.0.1:{full_backlog}/")
    (attempt,) = report.attempts
    assert attempt.layer == "connect_timeout", attempt.error
    assert attempt.timings.connect is None
    assert report.findings()[0].kind == "probe.connect_timeout"


async def test_connection_closed_without_an_answer_is_protocol() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        report = await HttpxProber(attempts=1, timeout=2.0).probe(f"http://127.0.0.1:{port}/")
    (attempt,) = report.attempts
    assert attempt.layer == "protocol"
    assert report.findings()[0].kind == "probe.connection_broken"


async def test_name_under_invalid_is_a_dns_failure() -> None:
    report = await HttpxProber(**FAST).probe("http://incident-bot-probe.invalid/healthz")
    assert report.verdict == "failing"
    assert {a.layer for a in report.attempts} == {"dns"}
    assert report.attempts[0].address is None
    (finding,) = report.findings()
    assert finding.kind == "probe.dns_failure"
    assert PROBE_SIGNALS[finding.kind].cause == "dns_failure"


async def test_system_resolver_never_asks_about_invalid_names() -> None:
    with pytest.raises(socket.gaierror):
        await system_resolver("a.b.INVALID.", 80)
    assert await system_resolver("127.0.0.1", 80) == ["127.0.0.1"]


# --- TLS -------------------------------------------------------------------------------------------


async def test_self_signed_certificate_is_a_tls_error(tls_server: Server) -> None:
    report = await HttpxProber(attempts=2, interval=0.02, timeout=2.0).probe(f"{tls_server.base}/ok")
    assert report.verdict == "failing"
    attempt = report.attempts[0]
    assert attempt.layer == "tls"
    assert "certificate verify failed" in attempt.error
    assert "self" in attempt.error and "signed" in attempt.error
    assert attempt.timings.connect is not None and attempt.timings.tls is None
    (finding,) = report.findings()
    assert finding.kind == "probe.tls_error"
    assert PROBE_SIGNALS[finding.kind].cause == "upstream_tls_error"


async def test_trusted_tls_by_name_times_every_phase_in_order(tls_server: Server, self_signed: Cert) -> None:
    """Connected to the resolved address, the certificate is still checked against the URL's name (SNI)."""
    trust = ssl.create_default_context(cafile=str(self_signed.cert))
    prober = HttpxProber(attempts=2, interval=0.02, timeout=2.0, verify=trust)
    for url in (f"https://localhost:{tls_server.port}/ok", f"{tls_server.base}/ok"):
        report = await prober.probe(url)
        assert report.verdict == "ok", report.attempts[0].error
        for attempt in report.attempts:
            _ordered(attempt, tls=True)


# --- address policy --------------------------------------------------------------------------------


class _CountingResolver:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return await system_resolver(host, port)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://169.254.1.1:8080/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://100.100.100.200/latest/meta-data/",
    ],
)
async def test_metadata_and_link_local_addresses_are_refused_without_connecting(url: str) -> None:
    report = await HttpxProber(**FAST).probe(url)
    assert report.verdict == "refused"
    (attempt,) = report.attempts  # no retry of a refusal
    assert attempt.layer == "refused"
    assert attempt.timings.connect is None and attempt.status is None
    (finding,) = report.findings()
    assert finding.kind == "probe.refused"
    assert "probe.refused" not in PROBE_SIGNALS


@pytest.mark.parametrize("host", ["metadata.google.internal", "METADATA.GOOGLE.INTERNAL.", "metadata.goog"])
async def test_metadata_names_are_refused_before_any_lookup(host: str) -> None:
    resolver = _CountingResolver()
    report = await HttpxProber(resolver=resolver).probe(f"http://{host}/computeMetadata/v1/")
    assert report.verdict == "refused"
    assert resolver.asked == []
    assert "metadata" in report.attempts[0].error


async def test_non_http_urls_are_refused() -> None:
    report = await HttpxProber().probe("file:///etc/passwd")
    assert report.verdict == "refused"


async def test_redirect_between_loopback_ports_is_followed(http_server: Server, other_server: Server) -> None:
    target = f"{other_server.base}/ok"
    report = await HttpxProber(attempts=1, timeout=2.0).probe(f"{http_server.base}/redirect?to={target}")
    (attempt,) = report.attempts
    assert (attempt.layer, attempt.status, attempt.port) == ("ok", 200, other_server.port)
    assert attempt.redirects == (target,)
    _ordered(attempt, tls=False)
    t = attempt.timings
    assert t.redirect is not None and t.dns is not None
    assert 0 < t.redirect <= t.dns, "the phases are those of the last request, after the redirect"
    assert "via 1 redirect(s)" in report.findings()[0].evidence[0]


@pytest.mark.parametrize(
    "target", ["http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/", "file:///etc/passwd"]
)
async def test_redirect_to_a_refused_place_is_not_followed(http_server: Server, target: str) -> None:
    report = await HttpxProber(**FAST).probe(f"{http_server.base}/redirect?to={target}")
    assert report.verdict == "refused"
    (attempt,) = report.attempts
    followed = str(httpx.URL(http_server.base).join(target))
    assert attempt.redirects == (followed,)
    assert attempt.error.startswith(f"redirect to {followed}: ")


async def test_redirects_are_followed_only_up_to_the_limit(http_server: Server) -> None:
    report = await HttpxProber(attempts=1, timeout=2.0, max_redirects=2).probe(f"{http_server.base}/loop")
    (attempt,) = report.attempts
    assert (attempt.layer, attempt.status) == ("ok", 301)
    assert len(attempt.redirects) == 3
    assert "stopped after 2 redirects" in attempt.error


def _ips(*texts: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return [ipaddress.ip_address(t) for t in texts]


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::", "::ffff:127.0.0.1"])
def test_loopback_is_refused_unless_the_url_was_loopback(address: str) -> None:
    """A redirect (or DNS answer) from a non-loopback URL to this host itself is refused."""
    assert is_loopback(ipaddress.ip_address(address))
    refusal = address_refusal(_ips(address), loopback_allowed=False)
    assert refusal is not None and "loopback" in refusal
    assert address_refusal(_ips(address), loopback_allowed=True) is None


def test_any_forbidden_address_refuses_the_whole_host() -> None:
    assert address_refusal(_ips("203.0.113.7"), loopback_allowed=False) is None
    assert address_refusal(_ips("203.0.113.7", "127.0.0.1"), loopback_allowed=False) is not None
    assert address_refusal(_ips("203.0.113.7", "169.254.169.254"), loopback_allowed=True) is not None
    assert address_refusal(_ips("10.1.2.3", "2001:db8::1"), loopback_allowed=False) is None
    assert host_refusal("shop.example.com") is None


# --- the exception border --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "phase", "layer"),
    [
        (TimeoutError(), "resolve", "dns"),
        (httpx.ConnectTimeout("t"), "connect_tcp", "connect_timeout"),
        (TimeoutError(), "connect_tcp", "connect_timeout"),
        (TimeoutError(), "start_tls", "tls"),
        (httpx.ReadTimeout("t"), "receive_response_headers", "read_timeout"),
        (httpx.RemoteProtocolError("Server disconnected"), "receive_response_headers", "protocol"),
        (httpx.ReadError("reset"), "receive_response_body", "protocol"),
    ],
)
def test_classify_maps_library_errors_to_layers(exc: BaseException, phase: str, layer: str) -> None:
    assert classify(exc, phase)[0] == layer


def test_classify_unreachable_is_a_connect_error_and_unknown_errors_propagate() -> None:
    try:
        try:
            raise OSError(113, "No route to host")
        except OSError as inner:
            raise httpx.ConnectError("All connection attempts failed") from inner
    except httpx.ConnectError as exc:
        assert classify(exc, "connect_tcp") == ("connect_error", "No route to host (errno 113)")
    with pytest.raises(ValueError):
        classify(ValueError("a bug"), None)


# --- the report ------------------------------------------------------------------------------------


def test_signals_and_kinds_are_declared_against_the_catalog() -> None:
    for kind, signal in PROBE_SIGNALS.items():
        assert kind in LAYER_KINDS.values()
        assert signal.cause in CATALOG


def test_recovery_then_failure_is_failing_and_mixed_failures_make_one_finding_per_layer() -> None:
    report = ProbeReport(
        url="https://user:hunter2@shop.example.com/healthz",
        attempts=(
            ProbeAttempt(url="u", layer="connect_refused", error="Connection refused (errno 111)"),
            ProbeAttempt(url="u", layer="ok", status=200),
            ProbeAttempt(url="u", layer="http_status", status=502),
        ),
    )
    assert report.verdict == "failing"
    kinds = sorted(f.kind for f in report.findings())
    assert kinds == ["probe.connect_refused", "probe.http_5xx"]
    dumped = report.model_dump(mode="json")
    assert dumped["verdict"] == "failing"
    for finding in report.findings():
        assert "hunter2" not in finding.summary + "".join(finding.evidence) + str(finding.data)
