"""flaxgan.synth.balance: targets, quotas, and rebalancing a stream to the requested
proportions."""

import numpy as np
import pytest

from flaxgan.errors import InvalidArgument
from flaxgan.synth import balance


def test_parse_target():
    assert balance.parse_target("male=0.5, glasses=0.25") == {"Male": 0.5, "Eyeglasses": 0.25}
    for bad in ("Male", "Male=2", "Male=x", ","):
        with pytest.raises(InvalidArgument):
            balance.parse_target(bad)
    with pytest.raises(InvalidArgument, match="unknown attribute"):
        balance.parse_target("Beard=0.5")


def test_quotas_are_whole_and_sum_to_num():
    q = balance.Quotas.from_target({"Male": 0.5, "Eyeglasses": 0.3}, 101)
    assert q.counts.sum() == 101 and q.counts.dtype == np.int64
    exact = 101 * np.array([0.35, 0.15, 0.35, 0.15])  # cells 00, 01, 10, 11
    assert np.all(np.abs(q.counts - exact) < 1)
    assert q.label(1) == "Male=0,Eyeglasses=1"
    assert q.shortfall(q.counts - [0, 2, 0, 0]) == {"Male=0,Eyeglasses=1": 2}
    np.testing.assert_array_equal(balance.cells_of(np.array([[1, 0], [0, 1], [1, 1]], bool)),
                                  [2, 1, 3])


def test_rebalancing_reaches_the_target_proportions():
    # A generator that makes 30% men and 5% glasses (independent); target 50% / 20%.
    rng = np.random.RandomState(0)
    n, num = 20_000, 1_000
    present = np.stack([rng.rand(n) < 0.3, rng.rand(n) < 0.05], axis=1)
    ok = rng.rand(n) > 0.1  # 10% fail the filters
    target = {"Male": 0.5, "Eyeglasses": 0.2}
    q = balance.Quotas.from_target(target, num)
    filled = np.zeros(4, np.int64)
    taken_all = []
    for start in range(0, n, 64):  # chunk by chunk, as the export does
        sl = slice(start, start + 64)
        taken, filled = balance.accept(balance.cells_of(present[sl]), ok[sl], filled,
                                       q.counts, num - sum(map(np.sum, taken_all)))
        taken_all.append(taken)
    taken = np.concatenate(taken_all)
    assert taken.sum() == num and not np.any(taken & ~ok)
    got = balance.fractions(present[taken], list(target))
    for name, p in target.items():  # quotas: within rounding, far inside sampling error
        assert abs(got[name] - p) <= max(3 * np.sqrt(p * (1 - p) / num), 2 / num), got
    # Accepting is a pure function of the order: the first `num` of each cell, no others.
    first = np.zeros(n, bool)
    for cell, quota in enumerate(q.counts):
        first[np.flatnonzero(ok & (balance.cells_of(present) == cell))[:quota]] = True
    np.testing.assert_array_equal(taken, first)


def test_without_a_target_every_passing_candidate_is_taken_in_order():
    ok = np.array([1, 0, 1, 1, 1], bool)
    taken, _ = balance.accept(np.zeros(5), ok, np.zeros(1), None, room=2)
    assert taken.tolist() == [True, False, True, False, False]
