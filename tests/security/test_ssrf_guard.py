"""The outbound-URL guard's parts on their own: the strict base-URL parser, the address filter, and who may use
which host (oma.core.outbound)."""

from __future__ import annotations

import pytest

from oma.core.outbound import (
    AddressGuard,
    AddressRefused,
    OutboundURLError,
    address_problem,
    hosts_of,
    merchant_base_url_error,
    parse_base_url,
)

pytestmark = pytest.mark.django_db


class _User:
    def __init__(self, *, is_superuser: bool) -> None:
        self.is_superuser = is_superuser


MERCHANT, OPERATOR = _User(is_superuser=False), _User(is_superuser=True)
GENSTORE = ("*.genmystore.com",)

BYPASSES = [
    "https://127.0.0.1:6379\\@x.genmystore.com",
    "https://127.0.0.1:6379\\\\@x.genmystore.com",
    "https://x.genmystore.com@127.0.0.1:6379",
    "https://user:pw@x.genmystore.com",
    "https://127.0.0.1:6379#@x.genmystore.com",
    "https://127.0.0.1:6379?@x.genmystore.com",
    "https://127.0.0.1:6379/#.genmystore.com",
    "https://x.genmystore.com/?next=http://127.0.0.1",
    "https://x.genmystore.com\t.evil.example",
    "https://x.genmystore.com\n",
    " https://x.genmystore.com",
    "https://x.genmystore.com\x00.evil.example",
    "http://2130706433:6379",
    "http://0177.0.0.1:6379",
    "http://0x7f000001:6379",
    "http://127.1:6379",
    "https://xn--ls8h.genmystore.com\u200b",
    "https://b\u00fccher.genmystore.com",
    "https://%31%32%37.0.0.1",
    "https://x.genmystore.com:99999",
    "https://x.genmystore.com:abc",
    "ftp://x.genmystore.com",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "//x.genmystore.com",
    "https://",
    "https:///x.genmystore.com",
]


@pytest.mark.parametrize("url", BYPASSES)
def test_the_parser_refuses_every_form_two_parsers_could_read_differently(url):
    with pytest.raises(OutboundURLError):
        parse_base_url(url)


@pytest.mark.parametrize("url", BYPASSES)
def test_even_a_superuser_cannot_save_an_ambiguous_base_url(url):
    assert merchant_base_url_error(url, user=OPERATOR, own_hosts=GENSTORE)
    assert merchant_base_url_error(url, user=MERCHANT, own_hosts=GENSTORE)


@pytest.mark.parametrize(
    ("url", "origin", "path"),
    [
        ("https://shop1.genmystore.com", ("https", "shop1.genmystore.com", 443), ""),
        ("HTTPS://Shop1.GenMyStore.com/", ("https", "shop1.genmystore.com", 443), "/"),
        ("http://127.0.0.1:8100/demo", ("http", "127.0.0.1", 8100), "/demo"),
        ("http://[::1]:8100", ("http", "::1", 8100), ""),
        ("https://apis-sandbox.fedex.com/track", ("https", "apis-sandbox.fedex.com", 443), "/track"),
        ("http://genstore_sandbox:8100", ("http", "genstore_sandbox", 8100), ""),
    ],
)
def test_the_parser_reads_plain_base_urls_as_urllib3_connects_to_them(url, origin, path):
    parsed = parse_base_url(url)
    assert parsed.origin == origin and parsed.path == path


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
     "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "192.0.0.8", "::1", "::", "fe80::1", "fc00::1",
     "fd12:3456::1", "fec0::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",
     "2002:7f00:1::", "2002:a9fe:a9fe::1", "64:ff9b::a9fe:a9fe", "::7f00:1", "fe80::1%eth0"],
)
def test_loopback_private_link_local_and_their_ipv6_disguises_are_not_public(address):
    assert address_problem(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                     "2002:808:808::1"])
def test_public_addresses_pass_the_filter(address):
    assert address_problem(address) is None


def test_the_guard_checks_the_integrations_own_hosts_and_leaves_the_operators_hosts_alone():
    guard = AddressGuard(own_hosts=GENSTORE, operator_hosts=lambda: ["localhost", "*.staging.example"])
    with pytest.raises(AddressRefused, match="loopback"):
        guard.check("x.genmystore.com", ["93.184.216.34", "127.0.0.1"])  # any one bad address refuses
    guard.check("x.genmystore.com", ["93.184.216.34", "2606:4700:4700::1111"])
    guard.check("localhost", ["127.0.0.1"])  # the operator's explicit choice
    guard.check("api.staging.example", ["10.0.0.5"])
    guard.check("127.0.0.1", ["127.0.0.1"])  # only an operator can have set another host (save-time check)


def test_an_operator_host_that_is_also_an_own_host_is_the_operators_choice():
    guard = AddressGuard(own_hosts=GENSTORE, operator_hosts=lambda: ["*.genmystore.com"])
    guard.check("shop1.genmystore.com", ["127.0.0.1"])


def test_hosts_of_reads_hosts_with_the_strict_parser():
    urls = ["https://apis.fedex.com", "https://127.0.0.1:1\\@x.fedex.com", "", "https://ssapi.shipstation.com/x"]
    assert hosts_of(urls) == ("apis.fedex.com", "ssapi.shipstation.com")


def test_merchants_get_only_own_hosts_over_https_or_the_operators_hosts(settings):
    settings.OMA_MERCHANT_API_HOSTS = ["sandbox.internal"]
    assert merchant_base_url_error("https://shop1.genmystore.com", user=MERCHANT, own_hosts=GENSTORE) is None
    assert "https" in merchant_base_url_error("http://shop1.genmystore.com", user=MERCHANT, own_hosts=GENSTORE)
    assert merchant_base_url_error("http://sandbox.internal:8100", user=MERCHANT, own_hosts=GENSTORE) is None
    assert "own API hosts" in merchant_base_url_error("http://[::1]:8100", user=MERCHANT, own_hosts=GENSTORE)
    assert merchant_base_url_error("http://[::1]:8100", user=OPERATOR, own_hosts=GENSTORE) is None
    assert merchant_base_url_error("", user=MERCHANT, own_hosts=GENSTORE) is None
