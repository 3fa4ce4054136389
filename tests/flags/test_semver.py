"""flags.semver: parsing and precedence as semver.org 2.0.0 defines them."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flags.semver import Version, parse

# The precedence example of semver.org section 11, in ascending order.
SPEC_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "2.0.0",
    "10.0.0",
]


def test_parse__specification_example__ascending_order():
    versions = [parse(text) for text in SPEC_ORDER]

    assert all(v is not None for v in versions)
    assert all(a < b for a, b in itertools.pairwise(versions))
    assert sorted(reversed(versions), key=lambda v: v.key) == versions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.4.0", Version(2, 4, 0)),
        ("v2.4.0", Version(2, 4, 0)),
        ("2.4.0+build.7", Version(2, 4, 0)),
        ("2.4.0-rc.1+exp.sha.5114f85", Version(2, 4, 0, ("rc", 1))),
        (" 1.2.3 ", Version(1, 2, 3)),
    ],
)
def test_parse__valid__parsed_and_build_metadata_ignored(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2.4",
        "2",
        "01.2.3",
        "1.02.3",
        "1.2.3-01",
        "1.2.3-",
        "1.2.3+",
        "x.y.z",
        "",
        "1.2.3.4",
        "\uff11.\uff12.\uff13",  # full-width digits
        None,
        124,
        "1.2.3\n4",
    ],
)
def test_parse__not_a_semantic_version__none(text):
    assert parse(text) is None


def test_parse__build_metadata__equal_precedence():
    assert parse("1.0.0+a") == parse("1.0.0+b")
    assert not parse("1.0.0+a") < parse("1.0.0+b")


@given(
    a=st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)),
    b=st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)),
)
def test_parse__release_triples__compare_like_tuples(a, b):
    va, vb = parse(".".join(map(str, a))), parse(".".join(map(str, b)))

    assert (va < vb) == (a < b)
    assert (va == vb) == (a == b)
