"""Matching and metrics against brute force."""

import json

import numpy as np
import pytest
from cli_runner import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from clarity_fast.detection import merge_duplicates
from clarity_fast.errors import InputError
from clarity_fast.io.points import Points, write_points
from clarity_fast.settings import Scale
from clarity_fast.evaluate import (
    Scored,
    balanced_threshold,
    best_threshold,
    f1_by_threshold,
    match_in_blocks,
    match_points,
    pool_volumes,
    reliability_weight,
    roc_auc,
    roc_curve,
    typed_threshold,
)


def brute_force_matches(pred, truth, radius):
    """The most pairs within radius, and the least sum of their distances, from one dense assignment."""
    if len(pred) == 0 or len(truth) == 0:
        return 0, 0.0
    d = cdist(pred, truth)
    cost = np.where(d <= radius, d, 1e9)
    r, c = linear_sum_assignment(cost)
    real = cost[r, c] < 1e9
    return int(real.sum()), float(d[r[real], c[real]].sum())


points = st.integers(0, 25).map(lambda n: n)


@settings(max_examples=60, deadline=None)
@given(n_pred=st.integers(0, 25), n_truth=st.integers(0, 25), seed=st.integers(0, 2**16), radius=st.floats(0.5, 5))
def test_matching_equals_one_global_assignment(n_pred, n_truth, seed, radius):
    rng = np.random.default_rng(seed)
    pred = rng.uniform(0, 15, size=(n_pred, 3))
    truth = rng.uniform(0, 15, size=(n_truth, 3))
    if n_pred and n_truth and seed % 2:  # some points exactly on others: distance 0
        pred[: min(n_pred, n_truth) // 2] = truth[: min(n_pred, n_truth) // 2]
    m = match_points(pred=pred, truth=truth, radius=radius)
    tp, distance = brute_force_matches(pred, truth, radius)
    assert m.tp == tp
    assert np.linalg.norm(pred[m.pairs[:, 0]] - truth[m.pairs[:, 1]], axis=1).sum() == pytest.approx(distance, abs=1e-9)
    assert m.tp + m.fp == n_pred and m.tp + m.fn == n_truth
    assert len(set(m.pairs[:, 0])) == m.tp == len(set(m.pairs[:, 1]))


def test_a_long_chain_of_pairs_is_reshuffled_for_the_most_pairs():
    # Five exact pairs, or six pairs each 3 apart once every one shifts along the chain: the most pairs win.
    pred = np.array([[0.0, 0.0, 3.0 * k] for k in range(1, 7)])
    truth = np.array([[0.0, 0.0, 3.0 * k] for k in range(6)])
    m = match_points(pred=pred, truth=truth, radius=3.5)
    assert m.tp == 6 and m.pairs[:, 0].tolist() == m.pairs[:, 1].tolist()  # prediction k with the truth 3 before it


def test_clusters_too_large_for_a_dense_matrix_match_as_well(monkeypatch):
    import clarity_fast.evaluate as evaluate

    monkeypatch.setattr(evaluate, "DENSE_CELLS", 0)  # every cluster through the sparse solver
    test_a_long_chain_of_pairs_is_reshuffled_for_the_most_pairs()
    rng = np.random.default_rng(3)
    for n_pred, n_truth in [(30, 20), (20, 30), (25, 25), (60, 40)]:
        pred, truth = rng.uniform(0, 12, size=(n_pred, 3)), rng.uniform(0, 12, size=(n_truth, 3))
        pred[:5] = truth[:5]  # distance 0
        m = match_points(pred=pred, truth=truth, radius=3.0)
        tp, distance = brute_force_matches(pred, truth, 3.0)
        assert m.tp == tp
        assert np.linalg.norm(pred[m.pairs[:, 0]] - truth[m.pairs[:, 1]], axis=1).sum() == pytest.approx(distance, abs=1e-9)


def test_axis_scale_counts_z_double():
    truth = np.array([[0.0, 0.0, 0.0]])
    assert match_points(pred=np.array([[1.5, 0, 0]]), truth=truth, radius=3.5, axis_scale=(2, 1, 1)).tp == 1
    assert match_points(pred=np.array([[2.0, 0, 0]]), truth=truth, radius=3.5, axis_scale=(2, 1, 1)).tp == 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 40))
def test_auc_equals_pairwise_probability(seed, n):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=n).astype(float)  # ties on purpose
    labels = rng.integers(0, 2, size=n)
    if labels.min() == labels.max():
        labels[0] = 1 - labels[0]
    pos, neg = scores[labels == 1], scores[labels == 0]
    expected = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert abs(roc_auc(scores, labels) - expected) < 1e-12
    # The curve, whatever the order of tied scores, encloses the same area (trapezoids over the tie steps).
    shuffled = rng.permutation(n)
    for order in (np.arange(n), shuffled):
        fpr, tpr = roc_curve(scores[order], labels[order])
        assert abs(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2) - expected) < 1e-12


@settings(max_examples=80, deadline=None)
@given(
    n_pred=st.integers(0, 40),
    n_truth=st.integers(0, 40),
    seed=st.integers(0, 2**16),
    side=st.floats(4, 30),
    levels=st.sampled_from([3, 10, 0]),
)
def test_f1_by_threshold_equals_a_matching_per_threshold(n_pred, n_truth, seed, side, levels):
    # Clustered points (a small side) make long augmenting paths and failed searches; few score levels make ties.
    rng = np.random.default_rng(seed)
    pred = rng.uniform(0, side, size=(n_pred, 3))
    truth = rng.uniform(0, side, size=(n_truth, 3))
    scores = rng.integers(0, levels, n_pred) / levels if levels else rng.uniform(0, 1, n_pred)
    thresholds = np.concatenate([np.unique(scores), [-1.0, 0.05, 0.5, 2.0]])
    f1 = f1_by_threshold(pred=pred, scores=scores, truth=truth, thresholds=thresholds, radius=3.5, axis_scale=(2, 1, 1))
    expected = [match_points(pred=pred[scores >= t], truth=truth, radius=3.5, axis_scale=(2, 1, 1)).f1 for t in thresholds]
    assert f1.tolist() == expected


@settings(max_examples=60, deadline=None)
@given(n_pred=st.integers(0, 40), n_truth=st.integers(0, 40), seed=st.integers(0, 2**16), levels=st.sampled_from([3, 0]))
def test_counted_points_are_scored_alike_by_threshold_and_by_matching(n_pred, n_truth, seed, levels):
    """Points of a block (x < 10) are counted, those beside it not. Where no point reaches partners of both kinds,
    every maximum matching finds and misses the same counted points, so the threshold pass and match_points agree
    exactly; detections beside the block still find the block's cells, and the block's detections its neighbours'."""
    rng = np.random.default_rng(seed)
    pred, truth = rng.uniform(0, 20, size=(n_pred, 3)), rng.uniform(0, 20, size=(n_truth, 3))
    reached = np.sqrt((((pred[:, None] - truth[None]) * (2, 1, 1)) ** 2).sum(-1)) <= 3.5  # (pred, truth)
    pred_in, truth_in = pred[:, 2] < 10, truth[:, 2] < 10
    mixed_truth = (reached & pred_in[:, None]).any(0) & (reached & ~pred_in[:, None]).any(0)
    mixed_pred = (reached & truth_in[None]).any(1) & (reached & ~truth_in[None]).any(1)
    pred, pred_in, truth, truth_in = pred[~mixed_pred], pred_in[~mixed_pred], truth[~mixed_truth], truth_in[~mixed_truth]
    scores = rng.integers(0, levels, len(pred)) / levels if levels else rng.uniform(0, 1, len(pred))
    thresholds = np.concatenate([np.unique(scores), [-1.0, 0.5, 2.0]])
    rule = dict(truth=truth, radius=3.5, axis_scale=(2, 1, 1), truth_counted=truth_in)
    f1 = f1_by_threshold(pred=pred, scores=scores, thresholds=thresholds, pred_counted=pred_in, **rule)
    expected = [match_points(pred=pred[scores >= t], pred_counted=pred_in[scores >= t], **rule).f1 for t in thresholds]
    np.testing.assert_allclose(f1, expected, rtol=1e-12)


def test_points_beside_a_block_find_and_are_found_but_are_never_wrong():
    truth = np.array([[0, 0, 0], [0, 0, 10], [0, 0, 20.4], [0, 0, 50]], float)  # in the block x < 20, beside it
    pred = np.array([[0, 0, 0.5], [0, 0, 10.5], [0, 0, 19.6], [0, 0, 30], [0, 0, 40]], float)
    pred_counted, truth_counted = pred[:, 2] < 19.5, truth[:, 2] < 19.5
    m = match_points(pred=pred, truth=truth, radius=1.0, pred_counted=pred_counted, truth_counted=truth_counted)
    # found: 0 (from inside), 10 (from outside: 10.5 is in the block too, as x < 19.5); 19.6 pairs with 20.4
    # beside the block (neither); 30 is a false positive only if counted (it is not); 50 is not the block's
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.1])
    t, best = best_threshold(pred=pred, scores=scores, truth=truth, radius=1.0, pred_counted=pred_counted, truth_counted=truth_counted)
    assert best.f1 == 1.0 and t <= 0.8
    with pytest.raises(ValueError, match="3 counted flags for 5 points"):
        match_points(pred=pred, truth=truth, radius=1.0, pred_counted=np.ones(3, bool))


def test_blocks_that_tile_a_volume_match_as_the_whole_volume_and_their_counts_sum():
    from clarity_fast.region import within

    rng = np.random.default_rng(5)
    truth = rng.uniform(0, [8, 40, 40], (60, 3))
    pred = np.concatenate([truth[:50] + rng.normal(0, 0.7, (50, 3)), rng.uniform(0, [8, 40, 40], (15, 3))])
    rule = dict(radius=3.5, axis_scale=(2.0, 1.0, 1.0))
    whole = match_points(pred=pred, truth=truth, **rule)
    far = ((-1e9, 1e9),) * 2
    tiles = [far + ((-1e9, 20.0),), far + ((20.0, 1e9),)]
    near = match_in_blocks(Scored(pred, np.arange(len(pred), dtype=float), truth), blocks=tiles, **rule)
    assert (near.match.tp, near.match.fp, near.match.fn) == (whole.tp, whole.fp, whole.fn) and near.found_from_outside == 0
    assert [sum(getattr(m, k) for m, _ in near.per_block) for k in ("tp", "fp", "fn")] == [whole.tp, whole.fp, whole.fn]
    assert sum(n for _, n in near.per_block) == len(pred) and np.array_equal(near.points.scores, np.arange(len(pred)))
    one = match_in_blocks(Scored(pred, None, truth), blocks=tiles[:1], **rule)
    assert one.per_block == [] and one.points.scores is None and one.match.tp + one.match.fn == int(within(truth, bounds=tiles[0]).sum())


def test_f1_by_threshold_refuses_scores_that_are_not_numbers():
    with pytest.raises(ValueError, match="finite"):
        f1_by_threshold(pred=np.zeros((2, 3)), scores=np.array([0.5, np.nan]), truth=np.zeros((1, 3)), thresholds=np.array([0.1]), radius=1.0)


def test_best_threshold_finds_the_separating_score():
    truth = np.array([[0, 0, 0], [0, 0, 10], [0, 0, 20]], float)
    pred = np.array([[0, 0, 0], [0, 0, 10], [0, 0, 20], [0, 0, 40], [0, 0, 50]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    t, m = best_threshold(pred=pred, scores=scores, truth=truth, radius=1.0)
    assert m.f1 == 1.0 and 0.2 < t <= 0.7


def test_merge_keeps_the_strongest_of_a_cluster_and_far_points():
    zyx = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 10], [0, 0, 11.5]], float)
    kept = merge_duplicates(zyx, np.array([0.5, 0.9, 0.3, 0.4]), radius=(2.0, 2.0, 2.0))
    assert kept.tolist() == [1, 3]


def test_evaluate_command_json(tmp_path):
    (tmp_path / "t.csv").write_text("z,y,x\n1,1,1\n5,5,5\n")
    (tmp_path / "p.csv").write_text("z,y,x\n1,1,2\n9,9,9\n")
    out = run_cli("evaluate", "--pred", tmp_path / "p.csv", "--truth", tmp_path / "t.csv", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["tp"], result["fp"], result["fn"]) == (1, 1, 1) and result["f1"] == 0.5
    # --radius changes the radius only: z is still counted double (1.5 planes away reads as 3 voxels).
    (tmp_path / "p.csv").write_text("z,y,x\n2.5,1,1\n")
    for radius, tp in (("3.5", 1), ("2.5", 0)):
        out = run_cli("evaluate", "--pred", tmp_path / "p.csv", "--truth", tmp_path / "t.csv", "--radius", radius, "--json")
        assert json.loads(out.stdout)["tp"] == tp and "z counted double" in json.loads(out.stdout)["rule"]


def test_evaluate_command_fits_the_threshold_for_scored_detections(tmp_path):
    # Two cells found at 0.9 and 0.4, two false detections at 0.2: keeping 0.4 and above is best (F1 1).
    (tmp_path / "t.csv").write_text("z,y,x\n1,1,1\n1,20,20\n")
    (tmp_path / "p.csv").write_text("z,y,x,probability\n1,1,1,0.9\n1,20,20,0.4\n1,40,40,0.2\n1,60,60,0.2\n")
    args = ("evaluate", "--pred", tmp_path / "p.csv", "--truth", tmp_path / "t.csv")
    assert "best_threshold" not in json.loads(run_cli(*args, "--json").stdout)  # only when asked: it matches up to 128 times
    out = json.loads(run_cli(*args, "--json", "--fit-threshold").stdout)
    assert out["f1"] == pytest.approx(2 / 3) and out["best_threshold"]["f1"] == 1.0 and 0.2 < out["best_threshold"]["threshold"] <= 0.4
    text = run_cli(*args, "--fit-threshold").stdout.splitlines()
    assert text[1].startswith("keeping scores >= ") and "F1 1.0000" in text[1]
    (tmp_path / "p.csv").write_text("z,y,x\n1,1,1\n")
    out = run_cli(*args, "--fit-threshold")
    assert out.returncode == 2 and "needs detections with scores" in out.stderr


def test_evaluate_command_scores_an_annotated_region(tmp_path):
    # The block x 0:40 holds cells at x 10 and 39 (another, at y 30, x 40.3, lies just beside it; one at 60 far
    # off). Detections: the cell at 10; the one at 39, found from just beside the block (x 39.8 rounds to 40); one
    # at y 30, x 39.4 in the block that finds the cell beside it (neither right nor wrong); a false one in the block
    # at 20; one beside it at 70 that finds nothing (the cells beside a block are not annotated: no false positive).
    (tmp_path / "t.csv").write_text("z,y,x\n1,5,10\n1,5,39\n1,30,40.3\n1,5,60\n")
    (tmp_path / "p.csv").write_text("z,y,x,probability\n1,5,10,0.9\n1,5,39.8,0.8\n1,30,39.4,0.85\n1,5,20,0.3\n1,5,70,0.95\n")
    args = ("evaluate", "--pred", tmp_path / "p.csv", "--truth", tmp_path / "t.csv")
    out = json.loads(run_cli(*args, "--region", ":x:x0:40", "--json", "--fit-threshold").stdout)
    assert (out["tp"], out["fp"], out["fn"], out["truth"], out["predictions"], out["region"]) == (2, 1, 0, 2, 3, ":x:x0:40")
    assert out["best_threshold"]["f1"] == 1.0 and 0.3 < out["best_threshold"]["threshold"] <= 0.8
    text = run_cli(*args, "--region", ":x:x0:40").stdout
    assert "region :x:x0:40: 2 cells, 3 detections in it and 1 beside it that found one of its cells" in text
    for region, message in (("0:2x0:4", "--region must be Z0:Z1xY0:Y1xX0:X1"), ("9:5x:x:", "holds no voxel along z (from 9 to 5")):
        bad = run_cli(*args, "--region", region)
        assert bad.returncode == 2 and message in bad.stderr and bad.stderr.count("\n") == 1
    out = run_cli(*args, "--region", "5:9x:x:")
    assert out.returncode == 0 and "t.csv holds no cells in region '5:9x:x:'" in out.stderr


def test_evaluate_command_scores_several_regions_together_and_each_alone(tmp_path):
    """Blocks that tile the volume score as the whole volume does, each block's counts summing to it; each block
    alone scores as --region of it alone; overlapping blocks are refused; detections in one file per block pool."""
    from clarity_fast.io.points import read_points
    from clarity_fast.region import parse_region, within

    rng = np.random.default_rng(3)
    truth = rng.uniform(0, [10, 60, 60], (120, 3))
    pred = np.clip(np.concatenate([truth[:100] + rng.normal(0, 0.6, (100, 3)), rng.uniform(0, [10, 60, 60], (20, 3))]), 0, [9.4, 59.4, 59.4])
    write_points(tmp_path / "t.csv", Points(zyx=truth))
    write_points(tmp_path / "p.csv", Points(zyx=pred, score=rng.uniform(0.3, 1, len(pred))), score_name="probability")
    args = ("evaluate", "--pred", tmp_path / "p.csv", "--truth", tmp_path / "t.csv", "--json")
    whole = json.loads(run_cli(*args, "--fit-threshold").stdout)
    blocks = (":x:x:20", ":x:30x20:", ":x30:x20:")
    tiled = json.loads(run_cli(*args, "--fit-threshold", *[a for b in blocks for a in ("--region", b)]).stdout)
    assert [tiled[k] for k in ("tp", "fp", "fn", "best_threshold")] == [whole[k] for k in ("tp", "fp", "fn", "best_threshold")]
    assert tiled["region"] == " + ".join(blocks) and [r["region"] for r in tiled["regions"]] == list(blocks)
    for key in ("tp", "fp", "fn"):
        assert sum(r[key] for r in tiled["regions"]) == tiled[key]
    for block, alone in zip(blocks, tiled["regions"]):
        assert all(json.loads(run_cli(*args, "--region", block).stdout)[k] == alone[k] for k in ("tp", "fp", "fn"))
    text = run_cli(*args[:-1], "--region", blocks[0], "--region", blocks[1]).stdout.splitlines()
    assert f"regions {blocks[0]} + {blocks[1]}:" in text[0] and text[1].startswith(f"  region {blocks[0]}: precision")
    bad = run_cli(*args, "--region", ":x:x:20", "--region", ":x:x19:")
    assert bad.returncode == 2 and "--region ':x:x:20' and ':x:x19:' overlap" in bad.stderr and bad.stderr.count("\n") == 1
    # the detections split over files, one per block (as detect --region writes them), pool to the same result
    for i, block in enumerate(blocks):
        inside = within(pred, bounds=parse_region(block, name="").bounds((10, 60, 60), source=""))
        write_points(tmp_path / f"p{i}.csv", Points(zyx=pred[inside], score=read_points(tmp_path / "p.csv").score[inside]), score_name="probability")
    split = ("evaluate", *[a for i in range(3) for a in ("--pred", tmp_path / f"p{i}.csv")], "--truth", tmp_path / "t.csv", "--json")
    pooled = json.loads(run_cli(*split, "--fit-threshold", *[a for b in blocks for a in ("--region", b)]).stdout)
    assert pooled == tiled
    (tmp_path / "empty.csv").write_text("z,y,x\n")  # no detections, so no scores missing
    assert json.loads(run_cli(*split[:1], "--pred", tmp_path / "empty.csv", *split[1:], "--fit-threshold", *[a for b in blocks for a in ("--region", b)]).stdout) == tiled
    twice = run_cli("evaluate", "--pred", tmp_path / "p0.csv", "--pred", tmp_path / "p0.csv", "--truth", tmp_path / "t.csv")
    assert twice.returncode == 2 and "p0.csv is given twice" in twice.stderr
    empty_block = run_cli(*args[:-1], "--region", blocks[0], "--region", "0:1x59:60x59:60")
    assert "t.csv holds no cells in region '0:1x59:60x59:60'" in empty_block.stderr
    write_points(tmp_path / "unscored.csv", Points(zyx=pred[:5]))
    bad = run_cli("evaluate", "--pred", tmp_path / "p0.csv", "--pred", tmp_path / "unscored.csv", "--truth", tmp_path / "t.csv", "--fit-threshold")
    assert bad.returncode == 2 and "unscored.csv: --fit-threshold needs detections with scores" in bad.stderr


def test_typed_threshold_keeps_what_the_threshold_keeps():
    scores = np.array([0.123456, 0.9, 0.05])
    assert typed_threshold(scores, 0.123456) == 0.1  # 0.1235 would drop the detection at 0.123456
    assert typed_threshold(np.array([0.99996, 0.5]), 0.99996) == 0.9  # keeps the one detection, as 0.99996 does
    assert typed_threshold(np.array([0.3, 0.31]), 0.305) == 0.31 and typed_threshold(np.array([0.2]), 0.5) == 0.5


def _scored_item(*, cells: int, cell_score: float, false: int) -> Scored:
    """Cells 20 apart along x scoring `cell_score`, and `false` far-away detections scoring 0.6."""
    truth = np.column_stack([np.zeros(cells), np.zeros(cells), 20.0 * np.arange(cells)])
    wrong = np.column_stack([np.zeros(false), np.full(false, 500.0), 20.0 * np.arange(false)])
    return Scored(np.concatenate([truth, wrong]), np.r_[np.full(cells, cell_score), np.full(false, 0.6)], truth)


def test_balanced_threshold_does_not_let_a_dense_item_dominate():
    # The dense item does best above 0.6 (it loses its false detections), the other only at 0.5 or below
    # (its cells score 0.5); pooled, the dense item's cells would win, balanced the sparser item's F1 counts too.
    items = [_scored_item(cells=200, cell_score=0.9, false=200), _scored_item(cells=40, cell_score=0.5, false=0)]
    threshold, mean_f1 = balanced_threshold(items, radius=2.0)
    weights = np.array([reliability_weight(200), reliability_weight(40)])
    assert threshold <= 0.5 and mean_f1 == pytest.approx(weights @ [400 / 600, 1.0] / weights.sum())
    pooled, _ = pool_volumes(items).best_threshold(radius=2.0)
    assert pooled > 0.6
    pooled_one, match = items[0].best_threshold(radius=2.0)
    assert balanced_threshold(items[:1], radius=2.0) == (pooled_one, match.f1)


def test_pooled_blocks_count_only_their_own_points():
    """Pooled blocks of larger volumes: a cell beside a block is context (a detection finding it is neither right nor
    wrong), a block's cell found from beside it is found; the threshold search and the weights see the same counts."""
    truth = np.array([[0.0, 0, 0], [0, 0, 40]])  # the second cell lies beside the block
    block = Scored(np.array([[0.0, 0, 1], [0, 0, 39], [0, 0, 80]]), np.array([0.9, 0.8, 0.7]), truth,
                   pred_counted=np.array([False, True, False]), truth_counted=np.array([True, False]))
    plain = _scored_item(cells=3, cell_score=0.9, false=1)
    pooled = pool_volumes([block, plain])
    assert block.cells == 1 and pooled.cells == 4
    m = pooled.match(radius=2.0)
    assert (m.tp, m.fp, m.fn) == (4, 1, 0)  # the block: its cell found from beside it, the detection at the cell beside it not false
    assert pooled.f1_by_threshold(np.array([0.0]), radius=2.0)[0] == pytest.approx(m.f1)
    assert balanced_threshold([block], radius=2.0) == (pytest.approx(0.7), 1.0)
    unscored = pool_volumes([block, Scored(plain.pred, None, plain.truth)])  # e.g. detection files without scores
    assert unscored.scores is None and unscored.match(radius=2.0).summary() == m.summary()
    with pytest.raises(ValueError, match="without scores"):
        unscored.match(radius=2.0, threshold=0.5)


def test_balanced_threshold_counts_a_near_empty_item_less():
    # Weighed equally, two cells at 0.5 would pull the threshold under the 40-cell item's false detections.
    items = [_scored_item(cells=40, cell_score=0.9, false=20), _scored_item(cells=2, cell_score=0.5, false=0)]
    threshold, _ = balanced_threshold(items, radius=2.0)
    assert threshold > 0.6
    assert reliability_weight(5) == pytest.approx(0.2) and reliability_weight(1000) > 0.98


def test_merge_distance_joins_one_elongated_cell_and_keeps_touching_cells_apart():
    scale = Scale(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0)  # a cell: 3 x 6 x 6 voxels
    # Two maxima 1.3 radii apart along x (one elongated soma), and a neighbour touching it a diameter away.
    zyx = np.array([[10, 20, 20], [10, 20, 24], [10, 20, 26]], float)
    kept = merge_duplicates(zyx, np.array([0.9, 0.8, 0.7]), radius=scale.merge_radius_voxels)
    assert kept.tolist() == [0, 2]


@pytest.mark.parametrize(
    ("pred", "truth", "expected"),
    [(0, 0, (1.0, 1.0, 1.0)), (0, 2, (0.0, 0.0, 0.0)), (2, 0, (0.0, 0.0, 0.0))],
)
def test_empty_sides_give_consistent_scores(pred, truth, expected):
    """No detections in a block without cells is perfect agreement (it read precision 0, recall 0, F1 1)."""
    m = match_points(pred=np.arange(3 * pred).reshape(-1, 3) * 10.0, truth=np.arange(3 * truth).reshape(-1, 3) * 10.0 + 500, radius=3)
    assert (m.precision, m.recall, m.f1) == expected


@pytest.mark.parametrize("radius", [0.0, -1.0, float("inf"), float("nan")])
def test_a_radius_must_be_a_positive_number(radius):
    with pytest.raises(InputError, match="match radius must be a positive number"):
        match_points(pred=np.zeros((1, 3)), truth=np.zeros((1, 3)), radius=radius)


def test_an_empty_points_file_is_scored_with_a_warning(tmp_path):
    (tmp_path / "empty.csv").write_text("z,y,x\n")
    (tmp_path / "one.csv").write_text("z,y,x\n1,2,3\n")
    done = run_cli("evaluate", "--pred", tmp_path / "empty.csv", "--truth", tmp_path / "one.csv")
    assert done.returncode == 0 and "recall 0.0000" in done.stdout
    assert done.stderr.strip() == f"warning: {tmp_path / 'empty.csv'} holds no cells: check it is the file you meant"


def test_pairs_far_apart_in_large_units_still_match():
    """Real pairs are told from missing ones by their presence, not by a cost ceiling (1e9 dropped a pair 2e9 apart)."""
    match = match_points(pred=np.array([[0.0, 0.0, 0.0]]), truth=np.array([[0.0, 0.0, 2000.0]]), radius=1e10, axis_scale=(1e6, 1e6, 1e6))
    assert (match.tp, match.fp, match.fn) == (1, 0, 0)
