"""training.metrics against scikit-learn on random scores (with ties), and EER on known cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.errors import UserError
from training import metrics

sk = pytest.importorskip("sklearn.metrics")


def _cases():
    rng = np.random.default_rng(0)
    for k in range(30):
        n = int(rng.integers(2, 300))
        y = rng.integers(0, 2, n)
        y[0], y[-1] = 0, 1  # both classes present
        if k % 3 == 0:
            s = rng.random(n)
        elif k % 3 == 1:
            s = np.round(rng.random(n), 1)  # heavy ties
        else:
            s = rng.normal(y * 0.8, 1.0)  # informative scores
        yield s, y


@pytest.mark.parametrize("drop", [True, False])
def test_roc_curve_matches_sklearn(drop):
    for s, y in _cases():
        fpr, tpr, thr = metrics.roc_curve(s, y, drop_intermediate=drop)
        efpr, etpr, ethr = sk.roc_curve(y, s, drop_intermediate=drop)
        np.testing.assert_allclose(fpr, efpr)
        np.testing.assert_allclose(tpr, etpr)
        assert np.isinf(thr[0]) and np.isinf(ethr[0])
        np.testing.assert_allclose(thr[1:], ethr[1:])


def test_auc_and_ap_match_sklearn():
    for s, y in _cases():
        assert metrics.roc_auc(s, y) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
        assert metrics.average_precision(s, y) == pytest.approx(sk.average_precision_score(y, s), abs=1e-12)


def test_auc_ties_count_half():
    # one real and one fake with the same score: AUC exactly 0.5
    assert metrics.roc_auc([0.3, 0.3], [0, 1]) == 0.5
    assert metrics.roc_auc([0.3, 0.3, 0.9], [0, 1, 1]) == 0.75


def test_eer_known_cases():
    y = [0, 0, 0, 1, 1, 1]
    assert metrics.eer([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], y) == (0.0, 0.7)  # perfect separation
    assert metrics.eer([0.7, 0.8, 0.9, 0.1, 0.2, 0.3], y)[0] == 1.0  # inverted
    # by hand: at threshold 0.4 one real of two is above (FPR 1/2), one fake of two below (FNR 1/2)
    assert metrics.eer([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == (0.5, 0.4)
    # a crossing inside a diagonal ROC segment (a real and a fake tied at 0.5):
    # ROC (0, .5) -> (.5, 1): FNR - FPR goes .5 -> -.5, equal at the midpoint (.25, .75)
    rate, thr = metrics.eer([0.5, 0.1, 0.5, 0.9], [0, 0, 1, 1])
    assert rate == pytest.approx(0.25) and thr == 0.5


def test_eer_matches_roc_crossing_on_random_scores():
    for s, y in _cases():
        rate, thr = metrics.eer(s, y)
        fpr, tpr, _ = sk.roc_curve(y, s, drop_intermediate=False)
        fnr = 1 - tpr
        # the EER lies between the two rates at every ROC point around the crossing
        i = int(np.flatnonzero(fnr - fpr <= 0)[0])
        assert min(fpr[i - 1], fnr[i]) - 1e-12 <= rate <= max(fpr[i], fnr[i - 1]) + 1e-12
        assert thr in set(np.asarray(s, float).tolist())


def test_accuracy_at_threshold():
    s, y = [0.1, 0.5, 0.49, 0.9], [0, 1, 0, 1]
    assert metrics.accuracy(s, y, 0.5) == 1.0  # 0.5 counts as fake
    assert metrics.accuracy(s, y, 0.95) == 0.5
    assert metrics.accuracy(s, y, 0.0) == 0.5


def test_video_aggregation_means_frames():
    probs = [0.2, 0.4, 0.9, 0.7, 0.5, 0.1]
    labels = [0, 0, 1, 1, 1, 0]
    videos = ["b", "b", "a", "a", "a", "c"]
    vp, vy, names = metrics.video_scores(probs, labels, videos)
    assert names == ["b", "a", "c"]  # order of first appearance
    np.testing.assert_allclose(vp, [0.3, 0.7, 0.1])
    assert vy.tolist() == [0, 1, 0]


def test_video_with_mixed_labels_is_a_user_error():
    with pytest.raises(UserError, match="'v1'.*both real and fake"):
        metrics.video_scores([0.1, 0.9], [0, 1], ["v1", "v1"])


def test_summary_frame_and_video_levels():
    rng = np.random.default_rng(1)
    videos = [f"v{k // 4}" for k in range(40)]  # 10 videos of 4 frames
    labels = np.array([(k // 4) % 2 for k in range(40)])
    probs = np.clip(labels * 0.3 + rng.random(40) * 0.7, 0, 1)
    out = metrics.summary(probs, labels, videos, threshold=0.5)
    assert out["frame"]["auc"] == pytest.approx(sk.roc_auc_score(labels, probs))
    assert out["frame"]["n"] == 40 and out["frame"]["n_fake"] == 20
    vp, vy, _ = metrics.video_scores(probs, labels, videos)
    assert out["video"]["n"] == 10 and out["video"]["n_real"] == 5
    assert out["video"]["auc"] == pytest.approx(sk.roc_auc_score(vy, vp))
    assert out["video"]["ap"] == pytest.approx(sk.average_precision_score(vy, vp))
    assert out["notes"] == []


def test_one_class_gives_nan_and_a_note():
    out = metrics.summary([0.2, 0.3, 0.9], [0, 0, 0], ["a", "b", "c"], threshold=0.5)
    f = out["frame"]
    assert math.isnan(f["auc"]) and math.isnan(f["eer"]) and math.isnan(f["ap"])
    assert f["acc"] == pytest.approx(2 / 3)
    assert any("only real" in n for n in out["notes"])
    only_fake = metrics.summary([0.2, 0.9], [1, 1])
    assert math.isnan(only_fake["frame"]["auc"]) and only_fake["frame"]["ap"] == 1.0
    assert only_fake["video"] is None


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError):
        metrics.roc_auc([0.1, 0.2], [0, 1, 1])
    with pytest.raises(ValueError):
        metrics.roc_auc([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError):
        metrics.roc_auc([0.1, 0.2], [0, 2])


def test_false_alarm_rate_counts_reals_at_or_above_the_threshold():
    probs = [0.1, 0.5, 0.7, 0.9, 0.2]
    labels = [0, 0, 0, 1, 1]
    assert metrics.false_alarm_rate(probs, labels, 0.5) == pytest.approx(2 / 3)
    assert math.isnan(metrics.false_alarm_rate([0.9], [1], 0.5))
    assert metrics.summary(probs, labels, threshold=0.5)["frame"]["far"] == pytest.approx(2 / 3)


def test_catch_rate_counts_fakes_at_or_above_the_threshold():
    probs = [0.1, 0.5, 0.7, 0.5, 0.2, 0.9]
    labels = [0, 0, 0, 1, 1, 1]
    assert metrics.catch_rate(probs, labels, 0.5) == pytest.approx(2 / 3)
    assert metrics.catch_rate(probs, labels, 0.95) == 0.0
    assert math.isnan(metrics.catch_rate([0.9], [0], 0.5))


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0])
def test_threshold_at_fpr_is_the_lowest_meeting_the_target(target):
    rng = np.random.default_rng(0)
    probs = np.round(rng.random(60) * 0.98, 2)  # ties included
    labels = np.r_[np.zeros(40, int), np.ones(20, int)]
    t, achieved = metrics.threshold_at_fpr(probs, labels, target)
    real = probs[:40]
    assert achieved == pytest.approx(np.mean(real >= t)) and achieved <= target + 1e-12
    lower = [r for r in np.unique(real) if r < t]
    if lower:  # any lower real score as the threshold would break the target
        assert np.mean(real >= max(lower)) > target
    with pytest.raises(ValueError):
        metrics.threshold_at_fpr([0.5], [1], 0.1)


def test_threshold_at_fpr_says_when_the_target_cannot_be_met():
    t, achieved = metrics.threshold_at_fpr([1.0, 0.2, 0.9], [0, 0, 1], 0.0)
    assert t == 1.0 and achieved == pytest.approx(0.5)  # a real at p = 1: no threshold in 0..1 avoids it


def test_bootstrap_se_shrinks_with_items_and_clusters_are_wider():
    rng = np.random.default_rng(1)

    def draw(n_faces: int, per_face: int):
        face_effect = rng.normal(0, 1.0, n_faces)  # how detectable one face's forgeries are
        labels = np.tile([0, 1], n_faces * per_face // 2)
        faces = np.repeat(np.arange(n_faces), per_face)
        scores = 1 / (1 + np.exp(-(labels * (0.8 + face_effect[faces]) + rng.normal(0, 1, labels.size))))
        return scores, labels, [f"f{k}" for k in faces]

    s, y, g = draw(20, 10)
    small = metrics.bootstrap_auc(s, y, n=300)
    s2, y2, g2 = draw(20, 100)
    big = metrics.bootstrap_auc(s2, y2, n=300)
    clustered = metrics.bootstrap_auc(s2, y2, g2, n=300)
    assert big["se"] < small["se"]
    assert clustered["se"] > big["se"], "faces, not items, are the independent units"
    assert clustered["lo"] <= clustered["auc"] <= clustered["hi"]
    assert math.isnan(metrics.bootstrap_auc([0.1, 0.2], [0, 0], n=10)["se"])
