"""Store domains: which ones OMA connects, and the API address a domain stands for.

A store's API address is built from its domain when no base URL is set, so the domain decides where the worker
connects with the store's token: it must be a plain host name, never text that smuggles a port, a path or a
fragment into the URL (`localhost:8100#` once made `https://localhost:8100#.genmystore.com`).
"""

from __future__ import annotations

import re

from oma.core.outbound import host_matches, operator_api_hosts
from oma.genstore.client import GENSTORE_SHOP_SUFFIX

# A DNS label: letters, digits and hyphens, 1 to 63 characters, no hyphen at either end.
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class InvalidStoreDomain(ValueError):
    """A domain OMA does not connect; the message says what a store domain looks like."""


def store_domain_normalize(value: str) -> str:
    """A store domain as stored: what an operator types or pastes (any case, maybe a URL) -> shop1.genmystore.com.
    Only normalizes; `store_domain_problem` decides whether the result is a domain OMA connects."""
    text = value.strip().lower()
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text)
    return text.split("/", 1)[0].rstrip(".")


def is_plain_host_name(domain: str) -> bool:
    return len(domain) <= 253 and all(_LABEL.match(label) for label in domain.split("."))


def store_domain_problem(domain: str) -> str | None:
    """None when `domain` (normalized) is one OMA connects: `<label>.genmystore.com`, or a plain host name the
    operator allows in OMA_MERCHANT_API_HOSTS (staging shops, sandboxes); otherwise what is wrong, for a form."""
    label = domain.removesuffix(GENSTORE_SHOP_SUFFIX)
    if label != domain and _LABEL.match(label):
        return None
    if is_plain_host_name(domain) and host_matches(domain, operator_api_hosts()):
        return None
    return (f"{domain!r} is not a Genstore shop domain: give the shop's own address, like shop1.genmystore.com "
            "(letters, digits and hyphens before .genmystore.com, nothing after it).")


def store_api_base_url(domain: str) -> str:
    """The API address of the store with this domain: https://{domain}. InvalidStoreDomain for a domain OMA does
    not connect, so the address's host is always exactly the domain."""
    problem = store_domain_problem(domain)
    if problem:
        raise InvalidStoreDomain(problem)
    return f"https://{domain}"
