"""Outbound HTTP safety: where OMA's workers may connect, the one place that decides it (guard against server-side
request forgery).

A worker calls a store's, a carrier account's or a channel's base URL with that integration's credentials. If a
merchant could choose any URL, they could aim OMA at internal addresses: the cloud metadata service, Redis,
PostgreSQL, the admin itself. Three layers, all here:

1. Save time (`merchant_base_url_error`): a merchant may leave a base URL blank (the integration's own host), use
   one of the integration's own hosts over https, or a host the operator allows in OMA_MERCHANT_API_HOSTS
   (sandboxes, staging; http allowed there). Superusers are the operator: any host, but, like everyone, only a URL
   that `parse_base_url` accepts.
2. Connect time (`outbound_session`): the integration's base URL is parsed strictly again (rows saved before a
   check existed are refused when used, not only when saved); a session talks to that one origin only and follows
   no redirect elsewhere (the 3xx comes back as the answer); and a connection to one of the integration's OWN
   public hosts must resolve to public addresses only, and connects to the very address that was checked (no second
   DNS lookup, so no DNS rebinding). A host the operator allows is the operator's explicit choice and is not checked;
   any other host can only have been set by an operator, since the save-time check refuses it to merchants.
3. Parsing (`parse_base_url`) uses urllib3's parser, the one requests connects with, and refuses whatever two
   parsers could read differently: userinfo, backslashes, fragments, queries, whitespace and control characters,
   numeric hosts that are not a plain IPv4 address, and any disagreement with `urllib.parse.urlsplit`.

Every request also gets a (connect, read) timeout when its caller names none (DEFAULT_TIMEOUT), and every answer is
reported to the observers registered with `add_response_observer` (oma.ops counts 429s and 5xx per host). Retries
are oma.core.retry's, the shared token bucket oma.core.ratelimit's.

An HTTP(S) proxy from the environment (HTTPS_PROXY) takes over the connection: the address check is then the
proxy's job (an egress proxy such as smokescreen is the recommended production setup anyway).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import partial
from typing import Any, cast
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, LocationParseError, NameResolutionError, NewConnectionError
from urllib3.poolmanager import PoolManager
from urllib3.util import connection as urllib3_connection
from urllib3.util import parse_url
from urllib3.util.connection import _TYPE_SOCKET_OPTIONS
from urllib3.util.timeout import _DEFAULT_TIMEOUT, _TYPE_TIMEOUT

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*$")
# inet_aton reads 2130706433, 0177.0.0.1 and 0x7f.1 as 127.0.0.1: a host that looks numeric must be a plain IPv4.
_NUMERIC_LAST_LABEL = re.compile(r"(?:^|\.)(?:0x[0-9a-f]*|[0-9]+)$")


class OutboundURLError(ValueError):
    """A URL OMA will not call; the message says why, in words fit for a form."""


class OutboundRefused(requests.RequestException):
    """A request OMA refused to send (bad base URL, another origin, a non-public address): nothing reached the
    network, and retrying will not help."""


class AddressRefused(Exception):
    """Raised inside a connection when a host resolves to an address OMA does not connect to. Deliberately not an
    OSError: urllib3 would take it for a network failure and retry it; the adapter turns it into OutboundRefused."""


# --- parsing ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BaseURL:
    """A base URL that passed `parse_base_url`: what urllib3 will connect to, spelled out."""

    scheme: str
    host: str  # lower case; an IPv6 address without its brackets
    port: int | None
    path: str

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port or DEFAULT_PORTS[self.scheme]


def parse_base_url(url: str) -> BaseURL:
    """The base URL as urllib3 reads it, or OutboundURLError when it is not a plain http(s)://host[:port][/path]
    that every parser reads the same way."""
    text = url or ""
    if not text:
        raise OutboundURLError("Give an http(s) URL.")
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in text):
        raise OutboundURLError("The URL must not contain spaces or control characters.")
    for char, what in (("\\", "backslashes"), ("@", "a user name or password (@)"), ("#", "a fragment (#)"),
                       ("?", "a query (?)")):
        if char in text:
            raise OutboundURLError(f"The URL must not contain {what}.")
    if not text.isascii():
        raise OutboundURLError("Write the URL in ASCII (a host name in its xn-- form).")
    try:
        parsed = parse_url(text)
        split = urlsplit(text)
        split_port = split.port
    except (LocationParseError, ValueError):
        raise OutboundURLError("This is not a valid URL.") from None
    scheme = (parsed.scheme or "").lower()
    if scheme not in DEFAULT_PORTS or split.scheme.lower() != scheme:
        raise OutboundURLError("Give an http(s) URL.")
    host = (parsed.host or "").lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise OutboundURLError("Give an http(s) URL with a host.")
    if parsed.auth or (host, parsed.port) != ((split.hostname or "").lower(), split_port):
        raise OutboundURLError("This URL reads differently to different parsers; write it plainly.")
    problem = _host_problem(host)
    if problem:
        raise OutboundURLError(problem)
    return BaseURL(scheme=scheme, host=host, port=parsed.port, path=parsed.path or "")


def _host_problem(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)  # an IPv4 address in its usual dotted form, or an IPv6 address
        return None
    except ValueError:
        pass
    if not _HOST_NAME.match(host):
        return "The host is not a valid host name."
    if _NUMERIC_LAST_LABEL.search(host):
        return "Write an IP address as four decimal numbers (e.g. 10.0.0.1)."
    return None


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of any URL as urllib3 reads it; None when it has no http(s) origin."""
    try:
        parsed = parse_url(url)
    except LocationParseError:
        return None
    scheme = (parsed.scheme or "").lower()
    host = (parsed.host or "").lower().strip("[]")
    if scheme not in DEFAULT_PORTS or not host:
        return None
    return scheme, host, parsed.port or DEFAULT_PORTS[scheme]


def hosts_of(urls: Iterable[str]) -> tuple[str, ...]:
    """The hosts of these URLs (an integration's own base URLs -> its host patterns); unusable URLs are left out."""
    hosts = []
    for url in urls:
        try:
            hosts.append(parse_base_url(url).host)
        except OutboundURLError:
            continue
    return tuple(hosts)


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    host = host.lower()
    return any(fnmatchcase(host, pattern.strip().lower()) for pattern in patterns if pattern.strip())


def operator_api_hosts() -> tuple[str, ...]:
    """OMA_MERCHANT_API_HOSTS: the hosts the operator opens to merchants (none when Django is not configured, e.g.
    a client used from a plain script)."""
    if not settings.configured:
        return ()
    return tuple(getattr(settings, "OMA_MERCHANT_API_HOSTS", ()) or ())


def merchant_base_url_error(url: str, *, user: object, own_hosts: Iterable[str]) -> str | None:
    """Why `user` may not point an integration at `url`, or None when it may. `own_hosts`: fnmatch patterns of
    the integration's own API hosts (production and test). Blank means the integration's default."""
    if not url:
        return None
    try:
        parsed = parse_base_url(url)
    except OutboundURLError as exc:
        return str(exc)
    if user is None or getattr(user, "is_superuser", False):
        return None
    if host_matches(parsed.host, operator_api_hosts()):
        return None
    own = tuple(own_hosts)
    if host_matches(parsed.host, own):
        return None if parsed.scheme == "https" else "Use https for this host."
    allowed = ", ".join(own) or "none"
    return f"Only this integration's own API hosts ({allowed}) may be used here; ask your operator for others."


# --- which addresses a connection may reach ---------------------------------------------------------------------

# Not public, though Python's is_private (3.11) does not say so for every one of them.
_NOT_PUBLIC_IPV4 = (
    (ipaddress.IPv4Network("100.64.0.0/10"), "a shared (carrier-grade NAT) address"),
    (ipaddress.IPv4Network("192.0.0.0/24"), "an IETF protocol address"),
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_FLAGS = (
    ("is_loopback", "a loopback address"),
    ("is_unspecified", "the unspecified address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_private", "a private address"),
    ("is_reserved", "a reserved address"),
    ("is_site_local", "a site-local address"),
)


def address_problem(address: str) -> str | None:
    """Why OMA will not connect to this IP address on behalf of a merchant, or None for a public address.
    IPv6 forms that carry an IPv4 address (IPv4-mapped, 6to4, NAT64, Teredo) are judged by that address too."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_problem(str(ip.ipv4_mapped))
        embedded = [ip.sixtofour, *(ip.teredo or ())]
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        for inner in embedded:
            if inner is not None and (problem := address_problem(str(inner))):
                return problem
    for flag, what in _FLAGS:
        if getattr(ip, flag, False):
            return what
    if isinstance(ip, ipaddress.IPv4Address):
        for network, what in _NOT_PUBLIC_IPV4:
            if ip in network:
                return what
    return None if ip.is_global else "not a public address"


@dataclass(frozen=True, slots=True)
class AddressGuard:
    """Decides, per host, whether a connection must reach public addresses only (see the module docstring)."""

    own_hosts: tuple[str, ...]
    operator_hosts: Callable[[], Sequence[str]] = operator_api_hosts

    def must_be_public(self, host: str) -> bool:
        host = host.lower().strip("[]").rstrip(".")
        if host_matches(host, self.operator_hosts()):
            return False
        return host_matches(host, self.own_hosts)

    def check(self, host: str, addresses: Iterable[str]) -> None:
        if not self.must_be_public(host):
            return
        for address in addresses:
            problem = address_problem(address)
            if problem:
                raise AddressRefused(f"OMA does not connect to {host}: it resolves to {problem}")


def _guarded_create_connection(
    address: tuple[str, int],
    *,
    guard: AddressGuard,
    timeout: _TYPE_TIMEOUT,
    source_address: tuple[str, int] | None,
    socket_options: _TYPE_SOCKET_OPTIONS | None,
) -> socket.socket:
    """urllib3's create_connection with one DNS lookup whose every answer is checked before any is used; the
    socket connects to one of exactly those addresses."""
    host, port = address
    host = host.strip("[]")
    try:
        host.encode("idna")
    except UnicodeError:
        raise LocationParseError(f"'{host}', label empty or too long") from None
    infos = socket.getaddrinfo(host, port, urllib3_connection.allowed_gai_family(), socket.SOCK_STREAM)
    guard.check(host, (str(info[4][0]) for info in infos))
    error: OSError | None = None
    for family, socktype, proto, _canonname, sockaddr in infos:
        sock = None
        try:
            sock = socket.socket(family, socktype, proto)
            for option in socket_options or ():
                sock.setsockopt(*option)
            if timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            error = exc
            if sock is not None:
                sock.close()
    raise error or OSError("getaddrinfo returned no address")


class _GuardedConnectionMixin:
    """A urllib3 connection that resolves its host itself, through the guard (modelled on Sentry's
    SafeConnectionMixin); everything else (TLS, SNI, certificate checks on the host name) is urllib3's."""

    def __init__(self, *args: Any, address_guard: AddressGuard, **kwargs: Any) -> None:
        self._address_guard = address_guard
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:  # mirrors urllib3.connection.HTTPConnection._new_conn
        connection = cast(HTTPConnection, self)  # the mixin only ever sits on a urllib3 connection
        try:
            sock = _guarded_create_connection(
                (connection._dns_host, connection.port),
                guard=self._address_guard,
                timeout=connection.timeout,
                source_address=connection.source_address,
                socket_options=connection.socket_options,
            )
        except socket.gaierror as exc:
            raise NameResolutionError(connection.host, connection, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                connection, f"Connection to {connection.host} timed out. (connect timeout={connection.timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(connection, f"Failed to establish a new connection: {exc}") from exc
        sys.audit("http.client.connect", self, connection.host, connection.port)
        return sock


class GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection

    def __init__(self, *args: Any, address_guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn_kw["address_guard"] = address_guard


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection

    def __init__(self, *args: Any, address_guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn_kw["address_guard"] = address_guard


class GuardedPoolManager(PoolManager):
    def __init__(self, *args: Any, address_guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool_classes_by_scheme = {
            # cast: urllib3 only calls the class (pool_cls(host, port, **kw)), which a partial does as well
            "http": cast(type[HTTPConnectionPool], partial(GuardedHTTPConnectionPool, address_guard=address_guard)),
            "https": cast(type[HTTPConnectionPool], partial(GuardedHTTPSConnectionPool, address_guard=address_guard)),
        }


class GuardedAdapter(HTTPAdapter):
    """A requests adapter whose connections go through an AddressGuard."""

    def __init__(self, *, address_guard: AddressGuard, **kwargs: Any) -> None:
        self.address_guard = address_guard  # before super().__init__, which builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK,
                         **pool_kwargs: Any) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = GuardedPoolManager(
            num_pools=connections, maxsize=maxsize, block=block, address_guard=self.address_guard, **pool_kwargs
        )

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            return super().send(request, *args, **kwargs)
        except AddressRefused as exc:
            raise OutboundRefused(str(exc), request=request) from None


# --- the session ---------------------------------------------------------------------------------------------

# (connect, read) seconds for a request whose caller passes no timeout: no OMA request waits forever.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)

# Observers of every answer: called with (host, status code) or (host, the exception the request raised).
ResponseObserver = Callable[[str, int | requests.RequestException], None]
_observers: list[ResponseObserver] = []


def add_response_observer(observer: ResponseObserver) -> None:
    """Call `observer` for every answer (or failure) of every OutboundSession in this process; adding the same
    observer twice keeps one. Apps register theirs at start-up (oma.ops counts 429s and 5xx): core imports no app."""
    if observer not in _observers:
        _observers.append(observer)


def remove_response_observer(observer: ResponseObserver) -> None:
    if observer in _observers:
        _observers.remove(observer)


def _notify(host: str, outcome: int | requests.RequestException) -> None:
    for observer in tuple(_observers):
        try:
            observer(host, outcome)
        except Exception:  # an observer (metrics) must never fail the request it watches
            logger.exception("outbound response observer %r failed", observer)


class OutboundSession(requests.Session):
    """A session for one integration's base URL: talks to that origin only, follows no redirect to another origin
    (the 3xx is handed back as the answer), connects through the AddressGuard, applies `timeout` to a request
    that names none, and reports every answer to the registered observers (`add_response_observer`). A base URL
    that fails `parse_base_url` makes every request fail with OutboundRefused (nothing is sent)."""

    def __init__(self, *, base_url: str, own_hosts: Iterable[str],
                 operator_hosts: Callable[[], Sequence[str]] = operator_api_hosts,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.base: BaseURL | None = None
        self.refusal: str | None = None
        self.default_timeout = timeout
        try:
            self.base = parse_base_url(base_url)
        except OutboundURLError as exc:
            self.refusal = f"OMA does not call this base URL: {exc}"
        adapter = GuardedAdapter(address_guard=AddressGuard(own_hosts=tuple(own_hosts), operator_hosts=operator_hosts))
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    @property
    def host_label(self) -> str:
        """The base URL's host, with its port when not the scheme's default (the observers' `host`)."""
        if self.base is None:
            return ""
        if self.base.port in (None, DEFAULT_PORTS[self.base.scheme]):
            return self.base.host
        return f"{self.base.host}:{self.base.port}"

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if self.base is None:
            raise OutboundRefused(self.refusal or "no base URL", request=request)
        if origin_of(request.url or "") != self.base.origin:
            raise OutboundRefused("OMA calls only the integration's base URL, not another origin", request=request)
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        try:
            response = super().send(request, **kwargs)
        except requests.RequestException as exc:
            _notify(self.host_label, exc)
            raise
        _notify(self.host_label, response.status_code)
        return response

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is None or self.base is None:
            return None
        return target if origin_of(urljoin(resp.url, target)) == self.base.origin else None


def outbound_session(*, base_url: str, own_hosts: Iterable[str],
                     timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> OutboundSession:
    """The session every OMA client uses to call an integration at `base_url` (see OutboundSession)."""
    return OutboundSession(base_url=base_url, own_hosts=own_hosts, timeout=timeout)


def safe_error_text(value: object, *, limit: int = 300) -> str | None:
    """An error string from a documented field of a partner's answer, fit to store and show: control and format
    characters dropped, whitespace collapsed, at most `limit` characters. None when nothing is left."""
    if not isinstance(value, str):
        return None
    kept = "".join(ch for ch in value if ch.isspace() or not unicodedata.category(ch).startswith("C"))
    text = " ".join(kept.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text or None


# --- admin ---------------------------------------------------------------------------------------------------------


class FormKnowsUserAdmin:
    """ModelAdmin mixin: the form class built for a request carries the requesting user as `user`, so a form can
    check a base URL against who asks (`merchant_base_url_error`)."""

    def get_form(self, request: Any, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)  # type: ignore[misc]
        form.user = request.user  # a class made for this request, not shared with other requests
        return form
