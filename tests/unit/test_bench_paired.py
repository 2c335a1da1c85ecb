from __future__ import annotations

import pytest

from bench.paired import Ratio, paired_ratio


def test_identical_paths_give_one_with_a_tight_interval() -> None:
    runs = [12.0, 13.5, 11.0, 14.2, 12.8, 13.1]
    r = paired_ratio(runs, runs)
    assert (r.point, r.low, r.high, r.rounds) == (1.0, 1.0, 1.0, 6)


def test_a_steady_five_percent_gap_is_found_despite_drift_shared_by_both() -> None:
    hand = [10.0, 14.0, 12.0, 9.0, 13.0, 11.0, 15.0, 10.5]  # the machine drifts a lot ...
    shoal = [h * f for h, f in zip(hand, [0.95, 0.94, 0.96, 0.95, 0.95, 0.94, 0.96, 0.95], strict=True)]
    r = paired_ratio(shoal, hand)
    assert r.point == pytest.approx(0.95, abs=0.003)  # ... but each pair shares it
    assert 0.94 <= r.low <= r.point <= r.high <= 0.96
    assert r.verdict(0.90) == "met"
    assert r.verdict(0.97) == "not met"


def test_noisy_pairs_around_the_target_are_inconclusive() -> None:
    hand = [10.0] * 12
    shoal = [8.6, 10.4, 9.0, 10.2, 9.3, 9.9, 8.8, 10.5, 9.6, 9.4, 10.1, 9.2]
    r = paired_ratio(shoal, hand)
    assert r.low < 0.95 <= r.high
    assert r.verdict(0.95) == "inconclusive: run more rounds"


def test_same_data_same_interval() -> None:
    a, b = [1.0, 2.0, 3.0, 2.5], [1.1, 1.9, 3.3, 2.4]
    assert paired_ratio(a, b) == paired_ratio(a, b)


def test_inverse_ratio_is_the_inverse() -> None:
    a, b = [1.0, 2.0, 3.0, 2.5, 1.7], [1.1, 1.9, 3.3, 2.4, 1.5]
    assert paired_ratio(a, b).point == pytest.approx(1 / paired_ratio(b, a).point)


@pytest.mark.parametrize(("num", "den"), [([], []), ([1.0], [1.0, 2.0]), ([1.0, 0.0], [1.0, 1.0])])
def test_bad_series_are_refused(num: list[float], den: list[float]) -> None:
    with pytest.raises(ValueError):
        paired_ratio(num, den)


def test_text_names_the_interval_and_rounds() -> None:
    assert Ratio(0.9612, 0.94, 0.981, 20).text() == "0.961 [95% CI 0.940-0.981, 20 rounds]"
