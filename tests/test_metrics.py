"""Tests of msa_export.training.metrics against hand-computed values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from msa_export.training.metrics import (
    METRIC_NAMES,
    format_table,
    pearson,
    regression_metrics,
    summarize,
    weighted_f1,
)

# A small case worked out by hand (see the comments in the tests below).
PRED = [2.6, -0.4, 0.0, 1.2, -2.2, 0.3, 0.0]
TRUE = [2.5, -0.5, 0.0, -1.0, -3.0, 0.6, 1.0]


def test_keys_and_order() -> None:
    m = regression_metrics(PRED, TRUE)
    assert tuple(m) == METRIC_NAMES
    assert all(isinstance(v, float) for v in m.values())


def test_mae() -> None:
    # |0.1| + |0.1| + 0 + 2.2 + 0.8 + 0.3 + 1.0 = 4.5, over 7 clips
    assert regression_metrics(PRED, TRUE)["mae"] == pytest.approx(4.5 / 7)


def test_has0_counts_zero_as_non_negative() -> None:
    m = regression_metrics(PRED, TRUE)
    # true >= 0: T F T F F T T ; pred >= 0: T F T T F T T -> only clip 3 differs
    assert m["acc2_has0"] == pytest.approx(6 / 7)
    # class True: tp 4, fp 1, fn 0 -> F1 8/9, support 4
    # class False: tp 2, fp 0, fn 1 -> F1 4/5, support 3
    assert m["f1_has0"] == pytest.approx((4 * 8 / 9 + 3 * 4 / 5) / 7)


def test_non0_drops_zero_labels_and_counts_zero_prediction_as_negative() -> None:
    m = regression_metrics(PRED, TRUE)
    # clip 2 (label 0) dropped; true > 0: T F F F T T ; pred > 0: T F T F T F
    # (clip 6 predicts exactly 0: non-negative for has0, negative for non0)
    assert m["acc2_non0"] == pytest.approx(4 / 6)
    # class True: tp 2, fp 1, fn 1 -> 2/3 ; class False: tp 2, fp 1, fn 1 -> 2/3
    assert m["f1_non0"] == pytest.approx(2 / 3)
    assert m["acc2_non0"] != pytest.approx(m["acc2_has0"])


def test_acc7_rounds_half_to_even_like_numpy() -> None:
    m = regression_metrics(PRED, TRUE)
    # pred rounded: 3 -0 0 1 -2 0 0 ; true rounded: 2 (2.5 -> 2) -0 (-0.5 -> -0) 0 -1 -3 1 1
    # equal at clips 1 and 2 only
    assert m["acc7"] == pytest.approx(2 / 7)
    # rounding halves away from zero would give 2.5 -> 3 (match) and -0.5 -> -1 (no match)
    assert regression_metrics([2.6], [2.5])["acc7"] == 0.0
    assert regression_metrics([-0.4], [-0.5])["acc7"] == 1.0
    assert regression_metrics([1.6], [1.5])["acc7"] == 1.0  # 1.5 -> 2


def test_acc7_and_acc5_clip() -> None:
    m = regression_metrics(PRED, TRUE)
    # clipped to [-2, 2] then rounded: pred 2 -0 0 1 -2 0 0 ; true 2 -0 0 -1 -2 1 1
    assert m["acc5"] == pytest.approx(4 / 7)
    # out-of-range predictions are clipped before rounding
    assert regression_metrics([7.0], [3.0])["acc7"] == 1.0
    assert regression_metrics([-2.7], [-2.0])["acc5"] == 1.0
    assert regression_metrics([-2.7], [-2.0])["acc7"] == 0.0


def test_corr_hand_computed() -> None:
    # centred pred -1 0 1, centred true -1 1 0: dot 1, norms sqrt(2) * sqrt(2)
    assert regression_metrics([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])["corr"] == pytest.approx(0.5)
    assert pearson([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)


def test_constant_predictions_give_zero_corr_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = regression_metrics([0.5, 0.5, 0.5], [1.0, -1.0, 2.0])
    assert m["corr"] == 0.0
    assert regression_metrics([0.3], [1.0])["corr"] == 0.0  # single clip


def test_all_zero_labels_make_non0_nan() -> None:
    m = regression_metrics([0.1, -0.2], [0.0, 0.0])
    assert math.isnan(m["acc2_non0"]) and math.isnan(m["f1_non0"])
    assert m["acc2_has0"] == 0.5


@pytest.mark.parametrize(
    "pred,true",
    [([], []), ([1.0, 2.0], [1.0]), ([float("nan")], [1.0]), ([1.0], [float("inf")])],
)
def test_bad_input_raises(pred: list[float], true: list[float]) -> None:
    with pytest.raises(ValueError):
        regression_metrics(pred, true)


def test_accepts_arrays_of_any_shape() -> None:
    a = regression_metrics(np.array(PRED).reshape(7, 1), np.array(TRUE))
    b = regression_metrics(PRED, TRUE)
    assert a == b


def test_weighted_f1_hand_computed() -> None:
    # class 1: tp 1, fp 0, fn 1 -> 2/3 (support 2); class 0: tp 1, fp 1, fn 0 -> 2/3 (support 1)
    assert weighted_f1([1, 1, 0], [1, 0, 0]) == pytest.approx(2 / 3)
    # a class present only in the predictions has no weight, but costs precision
    assert weighted_f1([1, 1], [1, 0]) == pytest.approx(2 / 3)
    assert weighted_f1([0, 0], [0, 0]) == 1.0


def test_matches_scikit_learn_when_installed() -> None:
    skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn not installed")
    rng = np.random.default_rng(3)
    true = np.round(rng.uniform(-3, 3, 200) * 2) / 2  # some exact zeros and halves
    pred = true + rng.normal(0, 1.2, 200)
    m = regression_metrics(pred, true)
    assert m["f1_has0"] == pytest.approx(skm.f1_score(true >= 0, pred >= 0, average="weighted"))
    nz = true != 0
    assert m["f1_non0"] == pytest.approx(skm.f1_score(true[nz] > 0, pred[nz] > 0, average="weighted"))
    assert m["acc2_non0"] == pytest.approx(skm.accuracy_score(true[nz] > 0, pred[nz] > 0))
    assert m["corr"] == pytest.approx(np.corrcoef(pred, true)[0, 1])


def test_summarize_sample_std() -> None:
    runs = [
        {"mae": 1.0, "corr": 0.5},
        {"mae": 2.0, "corr": 0.7},
        {"mae": 3.0, "corr": 0.6},
    ]
    s = summarize(runs)
    assert list(s) == ["mae", "corr"]
    assert s["mae"] == {"mean": pytest.approx(2.0), "std": pytest.approx(1.0)}
    # deviations -0.1, 0.1, 0 -> sqrt(0.02 / 2)
    assert s["corr"]["mean"] == pytest.approx(0.6)
    assert s["corr"]["std"] == pytest.approx(0.1)


def test_summarize_single_run_and_errors() -> None:
    assert summarize([{"mae": 0.8}]) == {"mae": {"mean": 0.8, "std": 0.0}}
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError, match="different metrics"):
        summarize([{"mae": 1.0}, {"corr": 1.0}])


def test_format_table() -> None:
    single = regression_metrics(PRED, TRUE)
    summary = summarize([single, single])
    table = format_table({"one": single, "five seeds": summary}, metrics=("mae", "acc7", "x"))
    lines = table.splitlines()
    assert lines[0] == "| | mae | acc7 | x |"
    assert lines[2] == "| one | 0.643 | 28.6 | - |"
    assert lines[3] == "| five seeds | 0.643 ± 0.000 | 28.6 ± 0.0 | - |"
