"""The one hashing function behind canary routing and flag rollouts.

    bucket(namespace, subject) = uint64_be(sha256(utf8(namespace + ":" + subject))[0:8]) % 10000

- 10,000 buckets, so percentages have a granularity of 0.01 %: a subject is "in" a
  rollout of P percent when bucket < round(P * 100).
- The namespace is the salt: a canary rollout's own id, or a flag's key. Never a
  version id, so that publishing a new version does not re-deal users.
- SHA-256 is in every language's standard library, so any runtime can reproduce
  the assignment; docs/bucketing-test-vectors.json holds vectors to check against.
- Never Python's hash(): it is salted per process.

Pure module (no Django).
"""

import hashlib

BUCKETS = 10_000


def bucket(namespace: str, subject: str) -> int:
    """The subject's bucket in [0, 10000) for this namespace."""
    digest = hashlib.sha256(f"{namespace}:{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def percent_to_basis_points(percent: float | str) -> int:
    """A percentage (0.01 % granularity) as a bucket threshold in [0, 10000]."""
    value = round(float(percent) * 100)
    if not 0 <= value <= BUCKETS:
        raise ValueError(f"percentage must be between 0 and 100; got {percent}")
    return value


def is_in_rollout(namespace: str, subject: str, basis_points: int) -> bool:
    """True when the subject falls inside a rollout of `basis_points` / 100 percent."""
    return bucket(namespace, subject) < basis_points
