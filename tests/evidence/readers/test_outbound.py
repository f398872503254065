"""Outbound-call reader: timeouts and refusals toward outside hosts, never toward local or database targets."""

from __future__ import annotations

from bot.evidence.readers.outbound import OutboundCall, is_local_or_database
from bot.testing import explain, kinds, read

from ._apps import fixture


def test_guzzle_curl_28_is_an_external_dependency() -> None:
    text = fixture("public-guzzle-curl-28.txt")
    assert kinds(text, [OutboundCall]) == {"outbound.timeout"}
    assert explain(text, 504).causes[0].id == "external_dependency"


def test_php_curl_error_without_host_still_counts_as_outside() -> None:
    text = fixture("php-errors.log")
    found = {f.kind: f for f in read(text, [OutboundCall])}
    assert (
        found["outbound.timeout"]
        .evidence[0]
        .endswith("cURL error 28: Operation timed out after 3001 milliseconds with 0 bytes received")
    )


def test_requests_timeouts_to_localhost_are_not_external() -> None:
    """Near miss: requests' ReadTimeout and refusal to 127.0.0.1 ports are local services."""
    text = fixture("gunicorn-flask-outbound-local.log")
    assert "HTTPConnectionPool(host='127.0.0.1', port=39998): Read timed out." in text
    assert kinds(text, [OutboundCall]) == set()


def test_node_refused_database_port_is_not_external() -> None:
    """Near miss: ECONNREFUSED 127.0.0.1:5432 is the database reader's finding."""
    assert kinds(fixture("node-econnrefused-5432.txt"), [OutboundCall]) == set()


def test_node_reset_without_a_host_is_a_weak_outside_failure() -> None:
    found = {f.kind: f for f in read(fixture("node-read-econnreset.txt"), [OutboundCall])}
    assert found["outbound.unknown_host_failure"].data["failure"] == "reset"


def test_requests_connection_aborted_is_recognised() -> None:
    assert kinds(fixture("public-requests-connection-aborted.txt"), [OutboundCall]) == {"outbound.unknown_host_failure"}


def test_pm2_error_message_mentioning_econnrefused_is_not_a_connect_error() -> None:
    """Near miss: an app's own message text containing ECONNREFUSED is not a 'connect ECONNREFUSED h:p'."""
    assert kinds(fixture("pm2-api-error.log"), [OutboundCall]) == set()


def test_local_and_database_targets() -> None:
    assert is_local_or_database("127.0.0.1", 8080)
    assert is_local_or_database("localhost", None)
    assert is_local_or_database("db.internal", 5432)
    assert is_local_or_database("redis", None)
    assert is_local_or_database("10.0.0.5", 3306)
    assert not is_local_or_database("api.example.com", 443)
    assert not is_local_or_database("api.stripe.com", None)


def test_requests_read_timeout_to_an_outside_api() -> None:
    text = fixture("requests-readtimeout-external.txt")
    found = {f.kind: f for f in read(text, [OutboundCall])}
    assert found["outbound.timeout"].data["hosts"] == ["ai.fakeopen.com:443"]
    assert explain(text, 500).causes[0].id == "external_dependency"


def test_requests_read_timeout_to_a_local_service_is_not_external() -> None:
    """Near miss: the same text toward 127.0.0.1 (a local Plex server)."""
    assert kinds(fixture("public-requests-readtimeout-localhost.txt"), [OutboundCall]) == set()
