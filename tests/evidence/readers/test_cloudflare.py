"""cloudflare reader: Cloudflare's own 520–526 pages (text, HTML, JSON-escaped), status lines and cookies.

Fixtures are pages as posted in public issues (URLs in tests/fixtures/probes/SOURCES.md).
"""

from __future__ import annotations

import pytest

from bot.evidence.readers.cloudflare import CloudflareErrorPage
from bot.testing import explain, kinds, read
from tests.evidence.readers._host_fixtures import fixture

READERS = [CloudflareErrorPage]


@pytest.mark.parametrize(
    ("name", "status", "kind", "cause"),
    [
        ("cloudflare_522_text_dayzmod.txt", 522, "cloudflare.origin_unreachable", "cdn_origin_unreachable"),
        ("cloudflare_522_html_openai_error.txt", 522, "cloudflare.origin_unreachable", "cdn_origin_unreachable"),
        ("cloudflare_521_oneline.txt", 521, "cloudflare.origin_unreachable", "cdn_origin_unreachable"),
        ("cloudflare_524_text.txt", 524, "cloudflare.origin_timeout", "upstream_timeout"),
        ("cloudflare_524_html_title.txt", 524, "cloudflare.origin_timeout", "upstream_timeout"),
        ("cloudflare_526_text_keeweb.txt", 526, "cloudflare.origin_tls", "cdn_origin_tls"),
        ("cloudflare_526_copied_text.txt", 526, "cloudflare.origin_tls", "cdn_origin_tls"),
        ("cloudflare_520_whatwaf.txt", 520, "cloudflare.bad_origin_response", "cdn_bad_origin_response"),
        ("cloudflare_520_reference_number.txt", 520, "cloudflare.bad_origin_response", "cdn_bad_origin_response"),
    ],
)
def test_a_cloudflare_error_page_names_the_failing_hop(name: str, status: int, kind: str, cause: str) -> None:
    text = fixture("probes", name)
    found = read(text, READERS)
    assert {f.kind for f in found} == {kind}
    assert found[0].data["code"] == status
    assert explain(text).causes[0].id == cause


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("HTTP/2 522", 522),
        ("< HTTP/1.1 525 ", 525),
        ("<title>523 Origin Unreachable</title>", 523),
        ("2022/05/06 12:43:53 rpc error: code = Unknown desc = : HTTP status code 523; transport: x", 523),
        ('{"detail":"<span class=\\"code-label\\">Error code 524</span>"}', 524),
    ],
)
def test_status_lines_old_pages_and_escaped_html_carry_the_code(line: str, code: int) -> None:
    (finding,) = read(line, READERS)
    assert finding.data["code"] == code


def test_the_ray_id_is_kept() -> None:
    (finding,) = read(fixture("probes", "cloudflare_524_text.txt"), READERS)
    assert finding.data["ray_ids"] == ["4055103399d8531a"]


def test_a_subtitle_without_a_code_counts_when_a_ray_id_is_present() -> None:
    text = "Web server is down\nRay ID: 60fed5af1d67fdd5 •\n"
    assert kinds(text, READERS) == {"cloudflare.origin_unreachable"}


@pytest.mark.parametrize(
    "text",
    [
        "upstream timed out (110: Connection timed out) while connecting to upstream\n",
        "javax.net.ssl.SSLHandshakeException: SSL handshake failed\n",
        "Error 5220: quota exceeded\n",
        "Ray ID: 4055103399d8531a\n",
    ],
)
def test_near_miss_subtitles_and_markers_alone_are_not_cloudflare_errors(text: str) -> None:
    assert kinds(text, READERS) == set()
