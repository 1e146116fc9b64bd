"""The Link header in every shape Genstore's docs show."""

from __future__ import annotations

import pytest

from oma.genstore.parsing import parse_link_header

NEXT = "https://shop1.genmystore.com/api/202412/orders?pageToken=opqrstu&limit=3"
PREV = "https://shop1.genmystore.com/api/202412/orders?pageToken=xNTM4&limit=10"


@pytest.mark.parametrize(
    "value",
    [
        f"<{PREV}>; rel=previous, <{NEXT}>; rel=next",  # rel unquoted (the documented form)
        f'<{PREV}>; rel="previous", <{NEXT}>; rel="next"',  # RFC 8288 quoting
        f'"<{PREV}>; rel=previous, <{NEXT}>; rel=next"',  # the whole value wrapped in quotes
        f"< {PREV} >; rel=previous, < {NEXT} >; rel=next",  # stray spaces inside < >
        f'  "< {PREV}>;rel=previous ,<{NEXT} > ;  rel = next"  ',  # all of it at once
        f"<{NEXT}>; rel=next, <{PREV}>; rel=previous",  # order does not matter
        f"<{PREV}>; rel='previous', <{NEXT}>; rel='next'",
        f"<{PREV}>; rel=PREVIOUS, <{NEXT}>; rel=Next",
    ],
)
def test_link_header_variants(value):
    assert parse_link_header(value) == {"previous": PREV, "next": NEXT}


def test_only_next():
    assert parse_link_header(f"<{NEXT}>; rel=next") == {"next": NEXT}


def test_last_page_has_only_previous():
    assert "next" not in parse_link_header(f"<{PREV}>; rel=previous")


@pytest.mark.parametrize("value", [None, "", "   ", '""', "garbage", "<>; rel=next", f"<{NEXT}>"])
def test_empty_or_unusable_values(value):
    assert parse_link_header(value) == {}


def test_commas_inside_the_url_do_not_split_it():
    url = "https://shop1.genmystore.com/api/202412/orders?pageToken=a,b&limit=3"
    assert parse_link_header(f"<{url}>; rel=next") == {"next": url}


def test_extra_parameters_and_multiple_rels():
    value = f'<{NEXT}>; title="more"; rel="next last", <{PREV}>; rel=previous'
    assert parse_link_header(value) == {"next": NEXT, "last": NEXT, "previous": PREV}


def test_first_url_for_a_rel_wins():
    assert parse_link_header(f"<{NEXT}>; rel=next, <{PREV}>; rel=next") == {"next": NEXT}
