"""Runs default_model.py's held-out sets (`sets`) or foreign_synthetic.py's test volumes (`foreign`) through tta_main.py."""
import csv, json, subprocess, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
_run = subprocess.run
def run(cmd, *a, **k):
    cmd = list(map(str, cmd))
    if cmd[1:3] == ["-m", "clarity_fast"]:
        cmd = [cmd[0], str(Path(__file__).with_name("tta_main.py")), *cmd[3:]]
    return _run(cmd, *a, **k)
subprocess.run = run
import default_model as dm
import foreign_synthetic as fs
from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, match_points
what = sys.argv[1]
if what == "foreign":
    f1 = []
    for i, c in enumerate(fs.CONDITIONS):
        _, truth = fs.make_volume(c, seed=2000 + i)
        m = match_points(pred=fs.detect_cnn(fs.OUT / f"condition_{i}" / "test.tif", c, "default").zyx, truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
        f1.append(m.f1); print(c.name, m.summary(), flush=True)
    print("mean", sum(f1) / len(f1))
else:
    with (dm.DELIVR / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    held = dm.held_out_patches(rows)
    r = dm.evaluate_sets(dm.PACKAGED, rows, held)
    print(json.dumps({k: dict(precision=v["precision"], recall=v["recall"], f1=v["f1"]) for k, v in r.items()}))
