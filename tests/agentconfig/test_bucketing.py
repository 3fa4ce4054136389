"""agentconfig.core.bucketing: stable, uniform, monotonic, independent between namespaces."""

import json
import random
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentconfig.core.bucketing import BUCKETS, bucket, is_in_rollout, percent_to_basis_points

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "bucketing-test-vectors.json"


def test_bucket__published_test_vectors__all_match():
    document = json.loads(VECTORS.read_text(encoding="utf-8"))

    assert document["buckets"] == BUCKETS
    assert len(document["vectors"]) >= 20
    for vector in document["vectors"]:
        assert bucket(vector["namespace"], vector["subject"]) == vector["bucket"], vector


def test_bucket__worked_example_in_readme():
    # sha256("canary:5f0c8a52-…:user-1") starts 118c01d2754f26f7; as a big-endian
    # integer that is 1264387598807148279, and 1264387598807148279 % 10000 = 8279.
    assert bucket("canary:5f0c8a52-6a2b-4a5e-9d3e-1c2f1c8b9a77", "user-1") == 8279


@given(namespace=st.text(max_size=40), subject=st.text(max_size=40))
def test_bucket__any_input__in_range_and_deterministic(namespace, subject):
    value = bucket(namespace, subject)

    assert 0 <= value < BUCKETS
    assert bucket(namespace, subject) == value


@pytest.mark.parametrize("percent", [0.01, 1, 5, 25, 50, 99.99])
def test_is_in_rollout__100000_random_users__share_close_to_percent(percent):
    rng = random.Random(f"uniformity-{percent}")
    namespace = f"canary:{uuid.UUID(int=rng.getrandbits(128))}"
    users = [f"user-{rng.getrandbits(64)}" for _ in range(100_000)]
    threshold = percent_to_basis_points(percent)

    share = sum(is_in_rollout(namespace, u, threshold) for u in users) / len(users)

    # Binomial standard deviation at n=100,000 is at most 0.16 %; allow 4 sigma.
    sigma = (percent / 100 * (1 - percent / 100) / len(users)) ** 0.5
    assert abs(share - percent / 100) <= 4 * sigma + 1e-9


@given(
    subject=st.text(max_size=30),
    low=st.integers(min_value=0, max_value=BUCKETS),
    high=st.integers(min_value=0, max_value=BUCKETS),
)
def test_is_in_rollout__percentage_rises__nobody_leaves(subject, low, high):
    low, high = sorted((low, high))

    if is_in_rollout("canary:ramp", subject, low):
        assert is_in_rollout("canary:ramp", subject, high)


def test_bucket__two_namespaces__independent_assignment():
    # Being in one rollout's 10 % says nothing about another's: the overlap is ~1 %.
    users = [f"user-{i}" for i in range(50_000)]
    first = {u for u in users if is_in_rollout("canary:rollout-a", u, 1000)}
    second = {u for u in users if is_in_rollout("canary:rollout-b", u, 1000)}

    overlap = len(first & second) / len(users)
    assert 0.007 < overlap < 0.013


@pytest.mark.parametrize(
    ("percent", "expected"), [(0, 0), (0.01, 1), (1, 100), (12.345, 1234), (100, 10_000)]
)
def test_percent_to_basis_points__granularity_one_hundredth(percent, expected):
    assert percent_to_basis_points(percent) == expected


@pytest.mark.parametrize("percent", [-1, 100.5])
def test_percent_to_basis_points__out_of_range__value_error(percent):
    with pytest.raises(ValueError, match="between 0 and 100"):
        percent_to_basis_points(percent)
