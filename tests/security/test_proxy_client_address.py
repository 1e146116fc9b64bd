"""Issue 13, item 3: the tracking lookup's rate limit behind reverse proxies.

With N trusted proxies the client is the Nth address from the right of X-Forwarded-For (each proxy appends the
peer it saw); what a client writes further left never picks its bucket, a malformed header never answers 500 or
opens a bucket of its own, and OMA warns (once per process and window) when every lookup comes from one private
address while OMA_TRUSTED_PROXY_COUNT is 0: the tell-tale of a proxy in front that OMA was not told about.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import RequestFactory
from django.urls import reverse

from oma.merchant import ratelimit
from oma.merchant.ratelimit import client_key

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"


@pytest.fixture(autouse=True)
def local_cache(settings) -> Iterator[None]:
    """The limiter's counters in process memory (Redis db 15 is shared with parallel runs) and a fresh watch."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": "proxy-tests"}}
    settings.OMA_TRACK_LOOKUPS_PER_WINDOW = 3
    cache.clear()
    ratelimit.shared_address_watch.reset()
    yield
    cache.clear()
    ratelimit.shared_address_watch.reset()


def _lookup(client, **meta):
    return client.post(reverse("track:lookup"), {"order": "1", "email": "a@example.com"}, **meta)


def _key(forwarded_for: str | None, remote: str = PROXY) -> str:
    meta = {"REMOTE_ADDR": remote}
    if forwarded_for is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client_key(RequestFactory().post("/track/", **meta))


@pytest.mark.parametrize(
    ("hops", "forwarded_for", "client"),
    [
        (1, "203.0.113.5", "203.0.113.5"),
        (1, "198.51.100.9, 203.0.113.5", "203.0.113.5"),  # the left one was written by the client
        (2, "198.51.100.9, 203.0.113.5, 10.0.0.9", "203.0.113.5"),
        (2, "203.0.113.5,10.0.0.9", "203.0.113.5"),
        (3, "1.1.1.1, 203.0.113.5, 10.0.0.8, 10.0.0.9", "203.0.113.5"),
    ],
)
def test_with_n_trusted_proxies_the_client_is_the_nth_forwarded_address_from_the_right(
    settings, hops: int, forwarded_for: str, client: str
) -> None:
    settings.OMA_TRUSTED_PROXY_COUNT = hops
    assert _key(forwarded_for) == client


def test_without_trusted_proxies_forwarded_for_is_ignored(settings) -> None:
    settings.OMA_TRUSTED_PROXY_COUNT = 0
    assert _key("203.0.113.5", remote="198.51.100.1") == "198.51.100.1"


def test_a_forwarded_address_with_a_port_counts_as_that_address(settings) -> None:
    settings.OMA_TRUSTED_PROXY_COUNT = 1
    assert _key("203.0.113.5:41234") == "203.0.113.5"
    assert _key("[2001:db8:1:2::7]:443") == "2001:db8:1:2::/64"
    assert _key("[2001:db8:1:2::7]") == "2001:db8:1:2::/64"


def test_the_client_cannot_choose_its_bucket_by_writing_forwarded_for(client, settings) -> None:
    """Behind one proxy a client prepends whatever it likes; the proxy's own entry still decides the bucket."""
    settings.OMA_TRUSTED_PROXY_COUNT = 1
    answers = [_lookup(client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, 203.0.113.5").status_code
               for n in range(4)]
    assert answers == [200, 200, 200, 429]
    # Another customer behind the same proxy is unaffected.
    assert _lookup(client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.6").status_code == 200


def test_a_malformed_forwarded_for_gives_no_bucket_of_its_own(client, settings) -> None:
    """Hops set too high, or the proxy bypassed: the trusted entry is garbage, so the peer's bucket counts it."""
    settings.OMA_TRUSTED_PROXY_COUNT = 1
    answers = [_lookup(client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"not-an-address-{n}").status_code
               for n in range(4)]
    assert answers == [200, 200, 200, 429]


@pytest.mark.parametrize(
    "forwarded_for",
    ["", " ", ",", ", ,", "unknown", "_hidden", "203.0.113.5,", "1.2.3.4:99999", "[::1", "::1]:80", "fe80::1%eth0",
     "٢٠٣.٠.١١٣.٥", "203.0.113.5\x00", "x" * 4000, ",".join(["203.0.113.5"] * 500), "::ffff:203.0.113.5",
     "2001:db8::1:443", "[]:1", "999.1.1.1", "1.2.3.4/24", "\u00a0203.0.113.5"],
)
def test_any_forwarded_for_value_answers_without_a_server_error(client, settings, forwarded_for: str) -> None:
    for hops in (1, 2):
        settings.OMA_TRUSTED_PROXY_COUNT = hops
        cache.clear()
        assert _lookup(client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded_for).status_code == 200
        ipaddress.ip_network(_key(forwarded_for), strict=False)  # always an address, never the text sent


def _proxy_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and "OMA_TRUSTED_PROXY_COUNT" in r.getMessage()]


def test_lookups_all_from_one_private_address_warn_once_per_window(client, settings, caplog) -> None:
    settings.OMA_TRUSTED_PROXY_COUNT = 0
    settings.OMA_TRACK_LOOKUPS_PER_WINDOW = 100
    settings.OMA_TRACK_WINDOW_SECONDS = 2
    caplog.set_level(logging.WARNING, logger="oma.merchant.ratelimit")
    for _ in range(12):
        _lookup(client, REMOTE_ADDR="172.18.0.5", HTTP_X_FORWARDED_FOR="203.0.113.5")
    [warning] = _proxy_warnings(caplog)
    assert "172.18.0.5" in warning.getMessage()

    time.sleep(2.1)  # the next window: still all from the proxy, so one more warning
    for _ in range(12):
        _lookup(client, REMOTE_ADDR="172.18.0.5")
    assert len(_proxy_warnings(caplog)) == 2


def test_loopback_counts_as_a_proxy_in_front_too(client, settings, caplog) -> None:
    settings.OMA_TRUSTED_PROXY_COUNT = 0
    caplog.set_level(logging.WARNING, logger="oma.merchant.ratelimit")
    for _ in range(6):
        _lookup(client, REMOTE_ADDR="127.0.0.1")
    assert len(_proxy_warnings(caplog)) == 1


def test_no_proxy_warning_for_public_clients_mixed_clients_or_a_configured_proxy(client, settings, caplog) -> None:
    settings.OMA_TRACK_LOOKUPS_PER_WINDOW = 100
    caplog.set_level(logging.WARNING, logger="oma.merchant.ratelimit")
    settings.OMA_TRUSTED_PROXY_COUNT = 0
    for n in range(12):
        _lookup(client, REMOTE_ADDR=f"203.0.113.{n}")
    ratelimit.shared_address_watch.reset()
    for n in range(12):  # an office LAN and customers from the internet: not a proxy
        _lookup(client, REMOTE_ADDR="192.168.1.20" if n % 2 else f"198.51.100.{n}")
    ratelimit.shared_address_watch.reset()
    settings.OMA_TRUSTED_PROXY_COUNT = 1
    for _ in range(12):
        _lookup(client, REMOTE_ADDR="172.18.0.5", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert _proxy_warnings(caplog) == []


def test_the_compose_deployment_trusts_its_one_tls_proxy_and_env_example_explains_the_setting() -> None:
    root = Path(__file__).resolve().parents[2]
    compose = (root / "docker-compose.yml").read_text()
    assert 'OMA_TRUSTED_PROXY_COUNT: "${OMA_TRUSTED_PROXY_COUNT:-1}"' in compose
    example = (root / ".env.example").read_text()
    explained = example.split("# OMA_TRUSTED_PROXY_COUNT=0", 1)[0].rsplit("\n\n", 1)[-1]
    assert "X-Forwarded-For" in explained and "shares the proxy's limit" in explained
