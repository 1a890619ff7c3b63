"""Stage 2: network, training data, training, model files, cross-validation, on tiny simulated brains."""


import numpy as np
import pytest
from cli_runner import run_cli

torch = pytest.importorskip("torch", reason="training needs the 'train' extra (torch)")

from clarity_fast.errors import InputError, ModelError
from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, Scored, match_in_blocks
from clarity_fast.manifest import read_manifest
from clarity_fast.model.augment import augment
from clarity_fast.model.crossval import BlobMethod, TemplateMethod, cross_validate, make_folds
from clarity_fast.model.calibrate import fit_calibration
from clarity_fast.model.config import Calibration, ModelConfig, NetworkConfig, multiply_accumulates
from clarity_fast.model.network import CellNet
from clarity_fast.model.samples import NEGATIVE_CLEARANCE, epoch_examples, load_annotated
from clarity_fast.model.store import load_model, save_model
from clarity_fast.model.train import TrainSettings, train
from clarity_fast.simulate import SimulationSettings, write_brains

TINY = TrainSettings(network=NetworkConfig(width=8, hidden=16), epochs=2, batch_size=64)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("sims")
    return write_brains(root, settings=SimulationSettings(shape=(20, 64, 64), difficulty=0.5, seed=5), n=3, progress=False)


@pytest.fixture(scope="module")
def volumes(manifest):
    return load_annotated(read_manifest(manifest), cell_diameter=12.0, voxel_size=None, prefilter_threshold=3.0)


@pytest.mark.parametrize("patch", [12, 16])
def test_network_maps_patches_to_logits(patch):
    config = NetworkConfig(patch=patch)
    net = CellNet(config)
    assert net(torch.zeros(5, 1, patch, patch, patch)).shape == (5,)
    assert multiply_accumulates(config) > 0


def test_hard_negatives_keep_clear_of_annotations(volumes):
    v = volumes[0]
    r = np.asarray(v.scale.cell_radius_voxels)
    neg = v.hard_negatives
    assert len(neg) > 0
    d = np.sqrt((((neg[:, None, :] - v.truth[None]) / r) ** 2).sum(-1)).min(axis=1)
    assert np.all(d > NEGATIVE_CLEARANCE)


def test_epochs_are_balanced(volumes):
    x, y = epoch_examples(volumes, patch=12, rng=np.random.default_rng(0))
    assert x.shape[1:] == (1, 12, 12, 12) and x.dtype == np.float32
    assert y.sum() == len(y) - y.sum()


def test_a_volume_annotated_as_empty_still_gives_negatives(volumes):
    from dataclasses import replace

    empty = replace(volumes[0], truth=np.empty((0, 3)))
    _, y = epoch_examples([empty, *volumes[1:]], patch=12, rng=np.random.default_rng(0))
    _, y_others = epoch_examples(volumes[1:], patch=12, rng=np.random.default_rng(0))
    typical = round(np.mean([len(v.truth) for v in volumes[1:]]))
    assert (y == 0).sum() == (y_others == 0).sum() + typical and y.sum() == y_others.sum()


def test_augment_keeps_shape_and_changes_patches():
    x = np.random.default_rng(0).normal(size=(4, 1, 12, 12, 12)).astype(np.float32)
    y = augment(x, rng=np.random.default_rng(1), quarter_turns=True)
    assert y.shape == x.shape and y.dtype == x.dtype and not np.allclose(x, y)


def test_training_is_deterministic_and_saves_a_safe_file(volumes, tmp_path):
    a = train(volumes, settings=TINY, prefilter_threshold=3.0, progress=False)
    b = train(volumes, settings=TINY, prefilter_threshold=3.0, progress=False)
    for k, v in a.net.state_dict().items():
        assert torch.equal(v, b.net.state_dict()[k]), k
    assert 0.0 <= a.config.threshold <= 1.0 and len(a.history) == 2
    assert a.config.calibration == b.config.calibration != Calibration()
    save_model(tmp_path / "m.pt", net=a.net, config=a.config)
    save_model(tmp_path / "n.pt", net=b.net, config=b.config)
    assert (tmp_path / "m.pt").read_bytes() == (tmp_path / "n.pt").read_bytes()  # one seed, one file, byte for byte
    data = torch.load(tmp_path / "m.pt", weights_only=True)
    assert set(data) == {"state_dict", "config"}
    net, config = load_model(tmp_path / "m.pt")
    assert config == a.config
    x = torch.zeros(2, 1, 12, 12, 12)
    with torch.inference_mode():
        assert torch.equal(net(x), a.net.eval()(x))


def test_a_bad_model_file_is_a_model_error(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ModelError):
        load_model(tmp_path / "bad.pt")
    with pytest.raises(ModelError):
        load_model(tmp_path / "missing.pt")


def test_folds():
    groups = ["a", "b", "c", "d"]
    assert [f.test_groups for f in make_folds(groups, scheme="loo", splits=0, test_frac=0, seed=0)] == [("a",), ("b",), ("c",), ("d",)]
    folds = make_folds(groups, scheme="random", splits=6, test_frac=0.5, seed=1)
    assert len(folds) == 6 and all(len(f.test_groups) == 2 for f in folds)
    assert len({f.test_groups for f in folds}) == 6  # no test set twice: each split counts once in the mean
    with pytest.raises(InputError, match="--splits 7: 4 groups give only 6 distinct test sets of 2"):
        make_folds(groups, scheme="random", splits=7, test_frac=0.5, seed=1)
    with pytest.raises(InputError):
        make_folds(["a"], scheme="loo", splits=1, test_frac=0.3, seed=0)


def test_baselines_cross_validate(volumes):
    folds = make_folds([v.group for v in volumes], scheme="loo", splits=0, test_frac=0, seed=0)
    report = cross_validate(volumes, folds=folds[:1], methods=[BlobMethod(), TemplateMethod(patch=12)], scheme="loo")
    assert {r["method"] for r in report.rows} == {"blob", "template"}
    for r in report.rows:
        assert 0.5 < r["patch_auc"] <= 1.0 and 0.0 <= r["f1"] <= 1.0
    assert "| blob |" in report.markdown()


def test_manifest_errors(tmp_path):
    (tmp_path / "m.csv").write_text("volume,points\nmissing.tif,missing.csv\n")
    with pytest.raises(InputError, match="does not exist"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "n.csv").write_text("volume\nx.tif\n")
    with pytest.raises(InputError, match="points"):
        read_manifest(tmp_path / "n.csv")
    (tmp_path / "p.csv").write_text("z,y,x\n")
    (tmp_path / "blank.csv").write_text("volume,points\n,p.csv\n")  # would resolve to the manifest's own folder
    with pytest.raises(InputError, match="line 2: no volume given"):
        read_manifest(tmp_path / "blank.csv")
    (tmp_path / "v.tif").write_bytes(b"")
    (tmp_path / "wide.csv").write_text("volume,points,group,voxel_size,cell_diameter\nv.tif,p.csv,g,4,2,2,12\n")
    with pytest.raises(InputError, match=r"line 2: 2 more value\(s\) than the header has columns; write a voxel size as 4x2x2"):
        read_manifest(tmp_path / "wide.csv")  # was read as voxel (4, 4, 4) and a 2 µm cell
    (tmp_path / "diameter.csv").write_text("volume,points,cell_diameter\nv.tif,p.csv,12x14\n")
    with pytest.raises(InputError, match="line 2: cell_diameter must be a number, got '12x14'"):
        read_manifest(tmp_path / "diameter.csv")  # was read as 12
    (tmp_path / "diameter.csv").write_text("volume,points,cell_diameter\nv.tif,p.csv,12\n")
    assert read_manifest(tmp_path / "diameter.csv")[0].cell_diameter == 12.0
    (tmp_path / "q.csv").write_text("z,y,x\n")
    (tmp_path / "twice.csv").write_text("volume,points\nv.tif,p.csv\n./v.tif,q.csv\n")  # could land on both sides of a split
    with pytest.raises(InputError, match="line 3: ./v.tif is listed on line 2 too"):
        read_manifest(tmp_path / "twice.csv")
    (tmp_path / "latin1.csv").write_bytes("volume,points\nv\u00e9.tif,p.csv\n".encode("latin-1"))  # a spreadsheet's export
    with pytest.raises(InputError, match="not UTF-8 text .* save the manifest as UTF-8 CSV"):
        read_manifest(tmp_path / "latin1.csv")



def test_a_nan_in_a_training_volume_names_the_file_and_plane(tmp_path):
    volume = np.random.default_rng(0).normal(100, 5, (12, 48, 48)).astype(np.float32)
    volume[7, 3, 3] = np.nan
    np.save(tmp_path / "bad.npy", volume)
    (tmp_path / "p.csv").write_text("z,y,x\n6,24,24\n")
    (tmp_path / "m.csv").write_text("volume,points,voxel_size\nbad.npy,p.csv,4x2x2\n")
    with pytest.raises(InputError, match=r"bad\.npy: NaN or infinite values in plane 7;"):
        load_annotated(read_manifest(tmp_path / "m.csv"), cell_diameter=12.0, voxel_size=None, prefilter_threshold=3.0)


def test_train_and_cv_commands(manifest, tmp_path):
    out = run_cli("train", "--manifest", str(manifest), "--out", str(tmp_path / "m.pt"), "--epochs", "1", "--width", "8")
    assert out.returncode == 0, out.stderr
    assert " cells in 2 volumes (1 more held out for validation), 1 epoch: " in out.stdout, out.stdout
    for name in ("m.pt", "m.train.json", "m.curve.png"):
        assert (tmp_path / name).is_file()
    out = run_cli("cv", "--manifest", str(manifest), "--scheme", "random", "--splits", "1", "--epochs", "1", "--width", "8", "--out", str(tmp_path / "cv"))
    assert out.returncode == 0, out.stderr
    for name in ("cv.md", "cv.json", "roc.png"):
        assert (tmp_path / "cv" / name).is_file()
    bad = run_cli("cv", "--manifest", str(manifest), "--method", "svm", "--out", str(tmp_path / "cv2"))
    assert bad.returncode == 2 and "--method" in bad.stderr


def whole_distance(points: np.ndarray, cells: np.ndarray, volume) -> np.ndarray:
    """Distance from each point to the nearest of `cells`, in the volume's cell radii."""
    r = np.asarray(volume.scale.cell_radius_voxels)
    return np.sqrt((((points[:, None] - cells[None]) / r) ** 2).sum(-1)).min(axis=1)


def test_train_on_regions_of_one_volume_command(manifest, tmp_path):
    volume = manifest.parent / read_manifest(manifest)[0].name
    (tmp_path / "m.csv").write_text(f"volume,points,region\n{volume},{volume.parent / 'cells.csv'},:x:32x:\n"
                                    f"{volume},{volume.parent / 'cells.csv'},:x32:x:\n")
    out = run_cli("train", "--manifest", tmp_path / "m.csv", "--out", tmp_path / "m.pt", "--epochs", "1", "--width", "8")
    assert out.returncode == 0, out.stderr
    assert " cells in 1 volume (1 more held out for validation), 1 epoch: " in out.stdout, out.stdout
    (tmp_path / "g.csv").write_text(f"volume,points,region,group\n{volume},{volume.parent / 'cells.csv'},:x:32x:,a\n"
                                    f"{volume},{volume.parent / 'cells.csv'},:x32:x:,b\n")
    out = run_cli("cv", "--manifest", tmp_path / "g.csv", "--epochs", "1", "--width", "8", "--out", tmp_path / "cv")
    assert out.returncode == 0, out.stderr
    assert all(out.stdout.count(f" {method}: patch AUC ") == 2 for method in ("cnn", "blob", "template")), out.stdout
    (tmp_path / "m.csv").write_text(f"volume,points,region\n{volume},{volume.parent / 'cells.csv'},0:30x:x:\n")
    out = run_cli("train", "--manifest", tmp_path / "m.csv", "--out", tmp_path / "n.pt", "--epochs", "1")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and not (tmp_path / "n.pt").exists()
    assert "line 2: " in out.stderr and "region '0:30x:x:' ends at z = 30, past the volume's 20 voxels along z" in out.stderr


def test_partial_annotations_leave_strong_unannotated_candidates_out_of_the_negatives(volumes):
    import dataclasses

    v = volumes[0]
    partial = dataclasses.replace(v, partial=True)
    complete_set = {tuple(p) for p in v.hard_negatives}
    partial_set = {tuple(p) for p in partial.hard_negatives}
    assert partial_set < complete_set
    near = np.array([tuple(p) not in complete_set for p in v.candidates.zyx])
    cap = np.median(v.candidates.response[near])
    kept = np.array([tuple(p) in partial_set for p in v.candidates.zyx])
    assert np.all(v.candidates.response[kept] < cap)


def test_volumes_with_one_file_name_in_different_folders_keep_apart(tmp_path):
    """Their names group folds under `cv --by volume` and list them in a model's training record."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "volume.tif").write_bytes(b"")
        (tmp_path / folder / "cells.csv").write_text("z,y,x\n")
    (tmp_path / "m.csv").write_text("volume,points,group\na/volume.tif,a/cells.csv,g\nb/volume.tif,b/cells.csv,g\n")
    assert [e.name for e in read_manifest(tmp_path / "m.csv")] == ["a/volume.tif", "b/volume.tif"]


def test_manifest_annotations_column(tmp_path):
    (tmp_path / "v.tif").write_bytes(b"")
    (tmp_path / "w.tif").write_bytes(b"")
    (tmp_path / "p.csv").write_text("z,y,x\n")
    (tmp_path / "m.csv").write_text("volume,points,annotations\nv.tif,p.csv,partial\nw.tif,p.csv,\n")
    assert [e.partial for e in read_manifest(tmp_path / "m.csv")] == [True, False]
    (tmp_path / "m.csv").write_text("volume,points,annotations\nv.tif,p.csv,some\n")
    with pytest.raises(InputError, match="complete or partial"):
        read_manifest(tmp_path / "m.csv")


def test_manifest_region_column(tmp_path):
    (tmp_path / "v.tif").write_bytes(b"")
    (tmp_path / "p.csv").write_text("z,y,x\n")
    (tmp_path / "m.csv").write_text('volume,points,region\nv.tif,p.csv,0:10x:x5:\nv.tif,p.csv,"10:20, 0:64, 0:64"\n')
    first, second = read_manifest(tmp_path / "m.csv")
    assert first.region.spans == ((0, 10), (None, None), (5, None)) and second.region.spans == ((10, 20), (0, 64), (0, 64))
    assert first.name == "v.tif[0:10x:x5:]" and first.group == second.group == "v.tif"  # blocks of one volume stay together
    assert first.region.bounds((30, 64, 70), source="s") == ((0, 10), (0, 64), (5, 70))
    with pytest.raises(InputError, match="s: region '0:10x:x5:' ends at z = 10, past the volume's 8 voxels along z"):
        first.region.bounds((8, 64, 70), source="s")
    with pytest.raises(InputError, match="holds no voxel along x"):
        first.region.bounds((30, 64, 5), source="s")
    for bad in ("0:10x0:10", "0-10x:x:", "a:bx:x:", "0:10x:x:x:", "-1:4x:x:"):
        (tmp_path / "m.csv").write_text(f"volume,points,region\nv.tif,p.csv,{bad}\n")
        with pytest.raises(InputError, match="line 2: region must be Z0:Z1xY0:Y1xX0:X1 in voxels"):
            read_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("volume,points,region\nv.tif,p.csv,:x8:8x:\n")
    with pytest.raises(InputError, match="line 2: region ':x8:8x:' holds no voxel along y"):
        read_manifest(tmp_path / "m.csv")  # refused on reading, before any volume is loaded
    (tmp_path / "m.csv").write_text("volume,points,region\nv.tif,p.csv,0:10x:x:\nv.tif,p.csv,9:12x:x:\n")
    with pytest.raises(InputError, match="line 3: region '9:12x:x:' of v.tif overlaps line 2's '0:10x:x:'"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("volume,points,region\nv.tif,p.csv,0:10x:x:\nv.tif,p.csv,\n")
    with pytest.raises(InputError, match="line 3: v.tif is listed on line 2 too; .* or give each row a region of its own"):
        read_manifest(tmp_path / "m.csv")


def test_a_region_is_the_whole_volume_read_there(tmp_path):
    """A region's candidates and cells are the whole volume's inside it, exactly, also resampled (the context read
    around it covers the prefilter's reach, and starts where its working grid falls on the whole's); what lies
    outside is neither a cell nor a non-cell, for training and for the baselines."""
    from dataclasses import replace

    from scipy.spatial import cKDTree

    from clarity_fast.manifest import parse_region
    from clarity_fast.model.samples import within

    (entry,) = read_manifest(write_brains(tmp_path, settings=SimulationSettings(shape=(32, 96, 96), difficulty=0.5, seed=5), n=1, progress=False))
    (whole,) = load_annotated([entry], cell_diameter=12.0, voxel_size=(5.0, 2.5, 2.5), prefilter_threshold=3.0)  # resampled, too
    for text in ("4:28x20:70x30:90", ":x:40x:", "10:20x:x60:"):
        region = parse_region(text, name="region")
        (part,) = load_annotated([replace(entry, region=region)], cell_diameter=12.0, voxel_size=(5.0, 2.5, 2.5), prefilter_threshold=3.0)
        bounds = region.bounds(whole.native.shape, source="")
        offset = np.array([b[0] for b in bounds]) - np.array([b[0] for b in part.region])
        for points, mine in ((whole.candidates.zyx, part.candidates.zyx), (whole.truth, part.truth)):
            native = whole.to_native(points)
            expected = native[within(native, bounds=bounds)]
            distance, _ = cKDTree(expected).query(part.to_native(mine) + offset, p=np.inf)
            assert len(mine) == len(expected) and distance.max() < 1e-9
        assert len(part.truth) > 0 and len(part.candidates) > len(part.truth)
        rng = np.random.default_rng(0)
        assert part.annotated(part.random_background(100, rng)).all() and part.annotated(part.hard_negatives).all()
        # a candidate on a cell listed just beside the block is no negative
        assert len(part.beside) and not part.annotated(part.beside).any()
        assert np.all(whole_distance(part.hard_negatives, part.beside, part) > NEGATIVE_CLEARANCE)
        # the candidates just around the block are the whole's there too (farther out, where the context read ends,
        # they need not be), and detections among them count only as they find the block's cells
        near = tuple((lo - 2, hi + 2) for lo, hi in bounds)
        native = whole.to_native(whole.candidates.zyx)
        expected = native[within(native, bounds=near) & ~within(native, bounds=bounds)]
        mine = part.to_native(part.context.zyx) + offset
        mine = mine[within(mine, bounds=near)]
        assert len(expected) and len(mine) == len(expected) and cKDTree(expected).query(mine, p=np.inf)[0].max() < 1e-9
        assert not part.annotated(part.context.zyx).any()
        scored = BlobMethod().scored(part)
        counted = part.annotated(part.grid.to_working(scored.pred))
        assert counted.any() and not counted.all() and np.array_equal(scored.pred_counted, counted)
        assert scored.cells == len(part.truth) and len(scored.truth) == len(part.truth) + len(part.beside)
        # the network's detections among every candidate read score as evaluate --region scores them
        logits = np.random.default_rng(1).normal(0.0, 2.0, len(part.detectable))
        detected = part.detected(logits, calibration=Calibration(), native=True)
        kept = detected.scores >= 0.5
        blocks = match_in_blocks(Scored(detected.pred[kept], None, detected.truth), blocks=[part.region],
                                 radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS).match
        mine = detected.match(threshold=0.5, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
        assert (mine.tp, mine.fp, mine.fn) == (blocks.tp, blocks.fp, blocks.fn) and not detected.pred_counted.all()


def test_calibration_is_fitted_from_logits_and_response():
    """Labels drawn from a known logistic model of logit and log response: the fit recovers its parameters."""
    rng = np.random.default_rng(0)
    logits, response = rng.normal(0, 2, 20000), np.exp(rng.normal(1.5, 0.5, 20000))
    truth = Calibration(logit_weight=0.7, response_weight=1.5, bias=-2.0)
    labels = rng.random(20000) < truth.probability(logits, response)
    fitted = fit_calibration(logits=logits, response=response, labels=labels)
    np.testing.assert_allclose([fitted.logit_weight, fitted.response_weight, fitted.bias], [0.7, 1.5, -2.0], atol=0.15)
    assert fit_calibration(logits=logits, response=response, labels=np.ones(20000, bool)) == Calibration()


def test_default_calibration_is_the_networks_own_probability_and_old_configs_load():
    logits = np.array([-30.0, -1.0, 0.0, 2.5, 30.0])
    np.testing.assert_allclose(Calibration().probability(logits, np.ones(5)), 1 / (1 + np.exp(-logits)), rtol=1e-6)
    config = ModelConfig(network=NetworkConfig(), voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0, threshold=0.5,
                         prefilter_threshold=4.0, calibration=Calibration(0.5, 1.0, -1.0))
    assert ModelConfig.from_dict(config.to_dict()) == config
    old = config.to_dict()
    del old["calibration"]
    assert ModelConfig.from_dict(old).calibration == Calibration()


def test_volumes_without_cells_are_never_held_out_for_validation():
    """A validation set of cell-less volumes gives no AUC, and training would keep the untrained network."""
    from types import SimpleNamespace

    from clarity_fast.model.train import split_validation

    empty, full = SimpleNamespace(truth=np.zeros((0, 3))), SimpleNamespace(truth=np.zeros((5, 3)))
    for volumes in ([empty, full], [full, empty], [empty, empty, full], [empty, full, full]):
        for seed in range(20):
            train, val = split_validation(volumes, fraction=0.2, seed=seed)
            assert any(len(v.truth) for v in val) and any(len(v.truth) for v in train)
            assert all(len(v.truth) for v in val) or val == volumes  # held out: only volumes with cells


def test_validation_by_group_keeps_each_group_on_one_side():
    """By group, no brain's blocks sit on both sides of early stopping; the held-out groups reach the share of cells,
    training keeps a group with cells, and groups without cells stay in training."""
    from types import SimpleNamespace

    from clarity_fast.model.train import split_validation

    rng = np.random.default_rng(0)
    for seed in range(30):
        volumes = [
            SimpleNamespace(group=f"brain{rng.integers(0, 5)}", truth=np.zeros((int(rng.integers(0, 40)), 3))) for _ in range(12)
        ]
        train, val = split_validation(volumes, fraction=0.3, seed=seed, by="group")
        if val is train:
            continue
        held = {v.group for v in val}
        assert held.isdisjoint(v.group for v in train)
        assert sum(len(v.truth) for v in train) > 0
        cells = {g: sum(len(v.truth) for v in volumes if v.group == g) for g in held}
        assert all(cells.values())
        total = sum(len(v.truth) for v in volumes)
        assert sum(cells.values()) >= 0.3 * total or len({v.group for v in train if len(v.truth)}) == 1
    with pytest.raises(ValueError, match="volume or group"):
        split_validation(volumes, fraction=0.3, seed=0, by="brain")


def test_cv_summary_skips_undefined_metrics_and_writes_strict_json(tmp_path):
    """A fold whose test volume is annotated as empty has no patch AUC: the mean is over the other folds, and
    cv.json says null where strict JSON readers would refuse a bare NaN."""
    import json

    from clarity_fast.io.atomic import write_json
    from clarity_fast.model.crossval import CVReport

    row = dict(method="blob", precision=0.5, recall=0.5, f1=0.5, f1_test_tuned=0.6, test_groups=["a"])
    report = CVReport(scheme="loo", rows=[dict(row, fold=0, patch_auc=0.9), dict(row, fold=1, patch_auc=float("nan"))])
    assert report.summary()["blob"]["patch_auc"] == (0.9, 0.0)
    row = dict(row, tp=1, fp=1, fn=1)
    assert "Fold 1 leaves a metric undefined" in CVReport(scheme="loo", rows=[dict(row, fold=0, patch_auc=0.9), dict(row, fold=1, patch_auc=float("nan"))]).markdown()
    write_json(tmp_path / "cv.json", report.to_dict(by="group"))
    parsed = json.loads((tmp_path / "cv.json").read_text(), parse_constant=lambda name: pytest.fail(f"bare {name} in cv.json"))
    assert parsed["folds"][1]["patch_auc"] is None and parsed["by"] == "group"


def test_training_refuses_what_it_cannot_learn_or_validate(volumes):
    """No cells at all ended in a ZeroDivisionError (exit 70); a validation set of cells only (every candidate at a
    cell) gave no AUC, so the untrained network was kept and saved with exit 0."""
    from dataclasses import replace

    no_cells = [replace(v, truth=np.empty((0, 3))) for v in volumes]
    with pytest.raises(InputError, match="no annotated cells"):
        train(no_cells, settings=TINY, prefilter_threshold=3.0)
    three = [replace(v, truth=v.truth[:3]) for v in volumes]  # 3 cells give no random negatives (30%, rounded down)
    at_cells = [replace(v, candidates=type(v.candidates)(np.rint(v.truth).astype(np.int64), np.full(3, 9.0))) for v in three]
    with pytest.raises(InputError, match="give only cells"):
        train(at_cells, settings=TINY, prefilter_threshold=3.0)


def test_train_checks_every_output_first_and_names_them_beside_the_model(manifest, tmp_path):
    """The log and curve of cfos.v1 and cfos.v2 no longer share a name; a log that cannot be written leaves the old
    model in place, and is found before training, not after."""
    import json

    (tmp_path / "m.train.json").mkdir()
    (tmp_path / "m.pt").write_text("old")
    done = run_cli("train", "--manifest", manifest, "--out", tmp_path / "m.pt", "--epochs", "1", "--width", "8")
    assert done.returncode == 4 and "m.train.json" in done.stderr and (tmp_path / "m.pt").read_text() == "old"
    done = run_cli("train", "--manifest", manifest, "--out", tmp_path / "cfos.v1", "--epochs", "1", "--width", "8")
    assert done.returncode == 0, done.stderr
    assert {p.name for p in tmp_path.iterdir()} >= {"cfos.v1", "cfos.v1.train.json", "cfos.v1.curve.png"}
    json.loads((tmp_path / "cfos.v1.train.json").read_text(), parse_constant=lambda name: pytest.fail(f"bare {name}"))
    done = run_cli("train", "--manifest", manifest, "--out", tmp_path / "x.onnx", "--epochs", "1")
    assert done.returncode == 2 and "name it .pt" in done.stderr and not (tmp_path / "x.onnx").exists()
    for target in (None, tmp_path / "cfos.v1"):  # by default cfos.v1 -> cfos.v1.onnx; never onto the model itself
        done = run_cli("export", "--onnx", tmp_path / "cfos.v1", *(["--out", target] if target else []))
        assert (done.returncode == 0) == (target is None), done.stderr
    assert (tmp_path / "cfos.v1.onnx").is_file() and "--out must name an .onnx file" in done.stderr
    (tmp_path / "volume.tif").write_text("data")  # any other name would be overwritten by a model
    done = run_cli("export", "--onnx", tmp_path / "cfos.v1", "--out", tmp_path / "volume.tif")
    assert done.returncode == 4 and (tmp_path / "volume.tif").read_text() == "data"
    (tmp_path / "cfos.v1.onnx").rename(tmp_path / "renamed.onnx")
    done = run_cli("export", "--onnx", tmp_path / "renamed.onnx", "--out", tmp_path / "renamed.onnx")
    assert done.returncode == 4 and "--out is the model being exported" in done.stderr
    done = run_cli("train", "--manifest", manifest, "--out", tmp_path / "x.pt", "--seed", "-1")
    assert done.returncode == 2 and "--seed must be >= 0" in done.stderr
    done = run_cli("train", "--manifest", manifest, "--out", tmp_path / "x.pt", "--validate-by", "brain")
    assert done.returncode == 2 and "--validate-by must be volume or group" in done.stderr and not (tmp_path / "x.pt").exists()


def test_no_validation_volume_would_be_adapted(volumes):
    """The reference share is estimated as detect estimates a volume's share, so --adapt leaves every validation
    volume as the threshold was chosen on it (a mean probability there read EM shares as denser)."""
    from clarity_fast.detection import logits_at
    from clarity_fast.model.store import TorchScorer
    from clarity_fast.model.train import split_validation
    from clarity_fast.volume_share import estimate_share, histogram, odds_factor

    trained = train(volumes, settings=TINY, prefilter_threshold=3.0, progress=False)
    calibration = trained.config.calibration
    _, val = split_validation(volumes, fraction=TINY.validation_fraction, seed=TINY.seed)
    scorer = TorchScorer(trained.net)
    shares = []
    for v in val:
        logits = logits_at(v.native, centres=v.candidates.zyx, scorer=scorer, patch=TINY.network.patch, grid=v.grid)
        shares.append(estimate_share(histogram(calibration.probability(logits, v.candidates.response)), prior=calibration.share))
    assert calibration.adapts
    assert max(shares) == pytest.approx(calibration.reference_share)
    assert all(odds_factor(s, reference=calibration.reference_share) == 1.0 for s in shares)


@pytest.mark.parametrize("method", ["cnn", "template"])  # template matching averaged no patches into NaN, a silent F1 of 0
def test_a_fold_that_cannot_train_names_itself_and_leaves_no_output_folder(tmp_path, method):
    from clarity_fast.simulate import SimulationSettings, write_brain

    rows = ["volume,points,group"]
    for k, group in enumerate("ABC"):
        write_brain(tmp_path / group, settings=SimulationSettings(shape=(8, 48, 48), seed=k), progress=False)
        if group != "A":  # only A's cells are annotated: the fold that tests A has nothing to learn from
            (tmp_path / group / "cells.csv").write_text("z,y,x\n")
        rows.append(f"{group}/volume.tif,{group}/cells.csv,{group}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    done = run_cli("cv", "--manifest", tmp_path / "m.csv", "--method", method, "--epochs", "1", "--width", "8", "--out", tmp_path / "new" / "cv")
    assert done.returncode == 2 and f"fold 0 ({method}, trained on B, C): no annotated cells" in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()  # the empty volumes' warnings, one error, and no numpy warnings
    assert sum(line.startswith("error: ") for line in lines) == 1 and all(line.startswith(("warning: ", "error: ")) for line in lines), lines
    assert not (tmp_path / "new").exists()  # nor the folder above it that the run made


def test_manifest_columns_comments_blank_rows_and_channel(tmp_path):
    (tmp_path / "v.tif").write_bytes(b"")
    (tmp_path / "p.csv").write_text("z,y,x\n")
    (tmp_path / "m.csv").write_text("# made by hand\nvolume,points,voxel size\nv.tif,p.csv,8x2x2\n")
    with pytest.raises(InputError, match="unknown column 'voxel size'; the columns are volume, points, group, voxel_size"):
        read_manifest(tmp_path / "m.csv")  # a misspelt voxel size was dropped, and the volume read at another scale
    (tmp_path / "m.csv").write_text("# made by hand\nvolume,points,channel\n,,\nv.tif,p.csv,1\n# v2.tif,p.csv,0\n")
    (entry,) = read_manifest(tmp_path / "m.csv")
    assert entry.channel == 1 and entry.line.endswith("m.csv line 4")
    (tmp_path / "m.csv").write_text('volume,points,group\nv.tif,p.csv,"a\n#b"\n')  # a quoted field's line starting with # is no comment
    (entry,) = read_manifest(tmp_path / "m.csv")
    assert entry.group == "a\n#b"
    (tmp_path / "m.csv").write_text("volume,points,channel\nv.tif,p.csv,²\n")
    with pytest.raises(InputError, match="channel must be a whole number"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("volume;points\nv.tif;p.csv\n")
    with pytest.raises(InputError, match="separated by ';'"):
        read_manifest(tmp_path / "m.csv")


def test_training_points_listed_twice_or_none_are_said(manifest, tmp_path, caplog):
    from dataclasses import replace

    from clarity_fast.io.points import Points, read_points, write_points

    (first,) = read_manifest(manifest)[:1]
    cells = read_points(first.points)
    doubled = tmp_path / "doubled.csv"
    write_points(doubled, Points(zyx=np.concatenate([cells.zyx, cells.zyx[:3]])))
    (tmp_path / "none.csv").write_text("z,y,x\n")
    with caplog.at_level("WARNING", logger="clarity_fast"):
        (volume,) = load_annotated([replace(first, points=doubled)], cell_diameter=12.0, voxel_size=None, prefilter_threshold=3.0)
        load_annotated([replace(first, points=tmp_path / "none.csv")], cell_diameter=12.0, voxel_size=None, prefilter_threshold=3.0)
    assert len(volume.truth) == len(cells.zyx)
    assert "lists 3 of its points more than once; each is taken once" in caplog.text
    assert "none.csv holds no cells: every candidate in" in caplog.text


def test_volumes_of_several_cell_sizes_record_the_first_and_say_so(volumes, caplog):
    from dataclasses import replace

    from clarity_fast.model.train import recorded_scale
    from clarity_fast.settings import Scale

    assert recorded_scale(volumes) == volumes[0].scale and not caplog.text
    other = replace(volumes[1], scale=Scale(voxel_size=(10 / 3, 10 / 6, 10 / 6), cell_diameter=10.0))
    with caplog.at_level("WARNING", logger="clarity_fast"):
        assert recorded_scale([volumes[0], other]).cell_diameter == 12.0
    assert "cell diameters of 10, 12 µm; the model records the first volume's, 12 µm" in caplog.text
