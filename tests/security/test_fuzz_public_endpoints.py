"""Every endpoint anyone can reach without signing in, fed malformed requests: no 5xx, and nothing stored.

Endpoints: /webhooks/genstore/, /webhooks/channels/<slug>/ (an existing and an unknown slug), /track/,
/track/<token>/, /track/logo/<store>/<digest>/, /healthz, /healthz/live and /metrics. Each gets some 230
hand-written nasty requests (headers with non-ASCII, huge, empty and NUL values; binary, truncated, deeply nested
and huge-number bodies; wrong methods and content types; odd query strings and paths; Content-Length values that
lie; for the webhooks, correctly signed bodies that are no JSON object) and 150 seeded random ones built from the
same parts: about 3,500 requests.

Through Django's test client with raise_request_exception=False, so a crash is seen as the 500 a caller would get.
The environ is what a WSGI server would build: header values, query strings and declared lengths are latin-1 text
of the bytes sent (Django relies on that), and a declared Content-Length comes with a stream of our own (the
client's fake stream refuses to be read past its end, a server's just ends).
"""

from __future__ import annotations

import io
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.test import Client
from django.utils import timezone

from oma.channels.connectors.webhook import sign as sign_channel
from oma.channels.models import Channel
from oma.channels.services import channel_create
from oma.merchant.tokens import tracking_path_for
from oma.ops.models import BeatLease, Heartbeat
from oma.stores.models import Store
from tests.channels.conftest import order_record, sync_orders
from tests.webhooks.payloads import SECRET, SHOP, encode, nested_json, order_json
from tests.webhooks.payloads import sign as sign_genstore

pytestmark = pytest.mark.django_db

SEED = 20261207
RANDOM_PROBES_PER_ENDPOINT = 150

# --- the parts requests are made of ----------------------------------------------------------------------------

NASTY_VALUES: list[str] = [
    "", " ", "\t", "²", "٣٤٥", "9" * 400, "9" * 5000, "-1", "+1", "0x1f", "1e999", "NaN", "Infinity",
    "\x00", "shop1.genmystore.com\x00", "a\x00b", "\x01\x7f\x1b[31m", "\u202egnp.exe", "ü" * 300, "\ud800",
    "A" * 20_000, "%00", "../../../etc/passwd", "' OR '1'='1", "<script>alert(1)</script>", "v1,", "v1,!!!!",
    "v1," + "A" * 10_000, "v1,bm90IGEgc2lnbmF0dXJl v2,x", "sha256=abc", "Bearer ", "Bearer " + "x" * 5000,
    "Basic Og==", "\r\nX-Injected: 1", "=?utf-8?b?w7w=?=", "\xff\xfe", "null", "{}", "[]", "true",
]

# The headers the endpoints read, and some every server sees.
HEADER_NAMES = [
    "X-Genstore-Shop-Domain", "X-Genstore-Topic", "X-Genstore-Hmac-Sha256", "X-Genstore-Webhook-Id",
    "X-Genstore-Api-Version", "webhook-id", "webhook-timestamp", "webhook-signature", "Authorization", "Cookie",
    "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-ID", "Accept", "Accept-Language", "If-None-Match", "Range",
    "Origin", "Referer", "User-Agent",
]

NASTY_BODIES: list[bytes] = [
    b"", b"{", b"[", b"{}", b"[]", b"null", b"0", b'"', b"\xff\xfe\x00", bytes(range(256)),
    b"[" * 100_000, b'{"a":' * 50_000, nested_json(10_000), b"9" * 5000, b"-" + b"9" * 4300, b"1e999999",
    b'{"order":{"orderId":' + b"9" * 5000 + b"}}",
    b'{"order":{"orderId":"\\u0000","email":"\\ud800"}}',
    b'{"externalOrderId":"\\u0000","shipments":[{"trackingNumber":"\\ud800","lineItems":[{"quantity":"\xc2\xb2"}]}]}',
    b'{"externalOrderId":' + b"9" * 4000 + b',"shipments":[{"trackingNumber":1e999}]}',
    encode(order_json("1"))[:37], encode(order_json("1"))[:-1],
    b"\xef\xbb\xbf{}", json.dumps({"order": {"orderId": "1"}}).encode("utf-16"),
    b"a=1&b=2&order=1&email=x%40y.z", b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n",
    b"NaN", b"[Infinity, -Infinity]", b'{"a":1,"a":2}', b'{"__proto__":{"x":1}}',
    b'{"order":' + b'"' + b"x" * 100_000 + b'"}', b"\x00" * 1000,
]

CONTENT_TYPES = [
    "application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "multipart/form-data", "application/json; charset=utf-16", "application/json; charset=no-such-charset",
    "application/x-www-form-urlencoded; charset=no-such-charset", "", "x" * 5000, "application/json\x00",
    "multipart/form-data; boundary=" + "-" * 5000,
]

# Declared lengths that need not be the body's; None: the true length.
CONTENT_LENGTHS = ["", "-1", "abc", "²", "٣", "9" * 400, "9" * 5000, "0", "1", " 5 ", "1e3", "0x10"]

QUERY_STRINGS = [
    "", "a=%00", "store=%00", "store=shop1.genmystore.com%00", "store=" + "a" * 5000, "%ff%fe=%c0%af",
    "a=1&" * 2000, "store=sh%C3%B6p", "store=" + SHOP, "next=//evil.example", "=&=&&", "a[]=1&a[0]=2", "%",
    "%%%", "a=%E2%82", "store=\xff\xfe", "format=json&debug=1", "token=" + "9" * 5000,
]

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "get"]


@dataclass
class Probe:
    method: str
    path: str
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = "application/json"
    content_length: str | None = None
    remote_addr: str = "192.0.2.1"

    def describe(self) -> str:
        def short(value: object) -> str:
            text = repr(value)
            return text if len(text) <= 80 else text[:77] + "..."

        return (f"{self.method} {short(self.path)}?{short(self.query)} headers={short(self.headers)} "
                f"body={short(self.body)} type={short(self.content_type)} length={short(self.content_length)}")


def as_wsgi(text: str) -> str:
    """`text` as a WSGI server hands it over (PEP 3333): its bytes (UTF-8 when sent as text) read as latin-1."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("latin-1")
    return text


def send(http: Client, probe: Probe) -> int:
    extra: dict[str, Any] = {"REMOTE_ADDR": probe.remote_addr, "QUERY_STRING": as_wsgi(probe.query)}
    if probe.body:
        extra["CONTENT_TYPE"] = as_wsgi(probe.content_type)
    if probe.content_length is not None:
        extra.update({"CONTENT_LENGTH": as_wsgi(probe.content_length), "wsgi.input": io.BytesIO(probe.body)})
    headers = {name: as_wsgi(value) for name, value in probe.headers.items()}
    response = http.generic(probe.method, probe.path, data=probe.body, headers=headers, **extra)
    return response.status_code


# --- the world the requests meet --------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    store: Store
    channel: Channel
    track_path: str


@pytest.fixture
def world(settings: Any) -> World:
    settings.OMA_WEBHOOK_BACKGROUND_PUBLISH = 0
    settings.OMA_WEBHOOK_STORE_CACHE_SECONDS = 0
    # Rate-limit counters in this process's memory: the shared Redis database is left to other test runs.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "fuzz"}}
    store = Store.objects.create(domain=SHOP, access_token="token", client_secret=SECRET,
                                 api_base_url="http://127.0.0.1:9")
    channel = channel_create(store=store, kind="webhook", name="Marketplace")
    [order] = sync_orders(store, [order_record("1001")])
    # Beat and a worker are alive: /healthz answers 200, so any 5xx from it is the request's doing.
    now = timezone.now()
    BeatLease.objects.create(name="beat", holder="fuzz", acquired_at=now, renewed_at=now)
    Heartbeat.objects.create(name="worker", beat_at=now, detail="fuzz")
    return World(store=store, channel=channel, track_path=tracking_path_for(order))


def row_counts() -> dict[str, int]:
    """Rows of every table the project has (ours, Django's auth, sessions and admin log)."""
    return {model._meta.label: model._default_manager.count() for model in apps.get_models()}


# --- the probes -----------------------------------------------------------------------------------------------


def endpoints(world: World) -> dict[str, tuple[str, str]]:
    """Name -> (the method it serves, its path)."""
    return {
        "genstore webhook": ("POST", "/webhooks/genstore/"),
        "channel webhook": ("POST", f"/webhooks/channels/{world.channel.slug}/"),
        "unknown channel webhook": ("POST", "/webhooks/channels/no-such-channel/"),
        "tracking lookup": ("POST", "/track/"),
        "tracking page": ("GET", world.track_path),
        "tracking page logo": ("GET", f"/track/logo/{world.store.pk}/{'ab' * 32}/"),
        "healthz": ("GET", "/healthz"),
        "liveness": ("GET", "/healthz/live"),
        "metrics": ("GET", "/metrics"),
    }


def odd_paths(path: str, world: World) -> list[str]:
    stem = path.rstrip("/")
    paths = [stem, path + "/", path + "x/", stem + "%00/", path + "%2e%2e/", path.upper(), "/" + path,
             path.replace("/", "//"), stem + "\xff/", stem + ";a=b/", path + "." * 300, stem + "%c0%af/"]
    if path == world.track_path:
        token = path.strip("/").split("/")[-1]
        paths += [f"/track/{variant}/" for variant in (
            token[:-1], token + "x", token[::-1], token.upper(), token.replace(":", "."), "%00", "..", "ü",
            "A" * 5000, "a:b:c", token[: len(token) // 2], token.swapcase(), "9" * 5000,
        )]
    if path.startswith("/track/logo/"):
        paths += [f"/track/logo/{store_id}/{digest}/" for store_id, digest in (
            ("9" * 400, "ab" * 32), ("9" * 5000, "ab" * 32), ("99999999999999999999", "ab" * 32), ("-1", "ab"),
            ("0", "%00" * 16), ("1", "a" * 5000), ("²", "ab" * 32), ("1", "%"), ("1", "ab" * 8),
        )]
    return paths


def hand_written(name: str, method: str, path: str, world: World) -> Iterator[Probe]:
    for value in NASTY_VALUES:  # every header at once, then each alone
        yield Probe(method, path, headers=dict.fromkeys(HEADER_NAMES, value), body=b"{}")
    for header in HEADER_NAMES:
        for value in ("\x00", "9" * 5000, "²", "\xff" * 300):
            yield Probe(method, path, headers={header: value}, body=b"{}")
    for body in NASTY_BODIES:
        yield Probe(method, path, body=body)
    for content_type in CONTENT_TYPES:
        yield Probe(method, path, body=b'{"order":1}', content_type=content_type)
    for length in CONTENT_LENGTHS:
        yield Probe(method, path, body=b'{"order": {"orderId": "1"}}', content_length=length)
        yield Probe(method, path, body=b"x" * 70_000, content_length=length)
    yield Probe(method, path, body=b"{" + b" " * (2 * 1024 * 1024) + b"}")  # over the body cap
    yield Probe(method, path, body=b"{}", content_length=str(2 * 1024 * 1024))  # claims more than it sends
    for query in QUERY_STRINGS:
        yield Probe(method, path, query=query, body=b"{}")
    for other_method in METHODS:
        yield Probe(other_method, path, body=b"{}")
    for odd_path in odd_paths(path, world):
        yield Probe(method, odd_path, body=b"{}")
    yield from authentic_but_malformed(name, method, path, world)


def _not_a_json_object(body: bytes) -> bool:
    try:
        return not isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):
        return True


def authentic_but_malformed(name: str, method: str, path: str, world: World) -> Iterator[Probe]:
    """Correctly signed deliveries whose body is no JSON object: answered 400, never stored."""
    bodies = [body for body in NASTY_BODIES if body and len(body) < 200_000 and _not_a_json_object(body)]
    if name == "genstore webhook":
        for body in bodies:
            headers = {"X-Genstore-Shop-Domain": SHOP, "X-Genstore-Topic": "orders/update",
                       "X-Genstore-Hmac-Sha256": sign_genstore(body, SECRET), "X-Genstore-Webhook-Id": "\x00²"}
            yield Probe(method, path, headers=headers, body=body)
    elif name == "channel webhook":
        for index, body in enumerate(bodies):
            timestamp, msg_id = int(time.time()), f"msg_fuzz_{index}"
            headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": sign_channel(
                secret=world.channel.signing_secret, msg_id=msg_id, timestamp=timestamp, body=body)}
            yield Probe(method, path, headers=headers, body=body)


def _random_text(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(NASTY_VALUES)
    if roll < 0.9:  # what a WSGI server hands over: latin-1 text of whatever bytes came
        return bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 8, 40, 300)))).decode("latin-1")
    return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(1, 60)))


def _random_body(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.4:
        return rng.choice(NASTY_BODIES)
    if roll < 0.7:
        return rng.randbytes(rng.choice((1, 16, 500, 5000)))
    valid = encode(order_json(str(rng.randrange(10**6))))
    if roll < 0.85:  # truncated
        return valid[: rng.randrange(len(valid))]
    spot = rng.randrange(len(valid))  # one byte changed
    return valid[:spot] + bytes([rng.randrange(256)]) + valid[spot + 1:]


def random_probes(rng: random.Random, method: str, path: str, world: World) -> Iterator[Probe]:
    for _ in range(RANDOM_PROBES_PER_ENDPOINT):
        probe = Probe(
            method if rng.random() < 0.75 else rng.choice(METHODS),
            path if rng.random() < 0.85 else rng.choice(odd_paths(path, world)),
            query=rng.choice(QUERY_STRINGS) if rng.random() < 0.3 else "",
            headers={rng.choice(HEADER_NAMES): _random_text(rng) for _ in range(rng.randrange(0, 6))},
            body=_random_body(rng),
            content_type=rng.choice(CONTENT_TYPES),
            content_length=rng.choice(CONTENT_LENGTHS) if rng.random() < 0.15 else None,
            remote_addr=f"198.51.100.{rng.randrange(1, 255)}",
        )
        yield probe


# --- the test ---------------------------------------------------------------------------------------------------


def test_malformed_requests_to_every_public_endpoint_get_no_5xx_and_store_nothing(world):
    http = Client(raise_request_exception=False)
    rng = random.Random(SEED)
    before = row_counts()
    server_errors: list[str] = []
    sent: dict[str, int] = {}
    started = time.monotonic()
    for name, (method, path) in endpoints(world).items():
        probes = [*hand_written(name, method, path, world), *random_probes(rng, method, path, world)]
        for probe in probes:
            status = send(http, probe)
            if status >= 500:
                server_errors.append(f"{name}: {status} for {probe.describe()}")
        sent[name] = len(probes)
    elapsed = time.monotonic() - started

    assert not server_errors, f"{len(server_errors)} server errors:\n" + "\n".join(server_errors[:40])
    assert min(sent.values()) >= 200, sent
    after = row_counts()
    changed = {table: (count, after[table]) for table, count in before.items() if after[table] != count}
    assert not changed, f"rows stored by malformed requests: {changed}"
    assert elapsed < 60, f"{sum(sent.values())} requests took {elapsed:.0f} s"
