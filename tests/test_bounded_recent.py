"""RecentSet: the last ``maxlen`` distinct keys, for duplicate detection per audio delta."""

from __future__ import annotations

import random

import pytest

from voiceengine._bounded import BoundedSet, RecentSet


def test_a_key_is_seen_until_maxlen_newer_keys_arrive() -> None:
    recent: RecentSet[str] = RecentSet(3)
    assert [recent.seen(k) for k in ("a", "b", "a", "c")] == [False, False, True, False]
    assert len(recent) == 3 and "a" in recent
    assert recent.seen("d") is False  # forgets "a", the oldest
    assert "a" not in recent and len(recent) == 3
    assert recent.seen("a") is False and recent.seen("b") is False  # "b" went when "a" came back


def test_it_answers_as_a_bounded_set_would_over_a_long_random_stream() -> None:
    rng = random.Random(7)
    recent: RecentSet[int] = RecentSet(16)
    model: BoundedSet[int] = BoundedSet(16)
    for _ in range(20000):
        key = rng.randrange(40)
        assert recent.seen(key) == model.seen(key)
        assert len(recent) == len(model) <= 16


def test_maxlen_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RecentSet(0)
