"""`clarity-fast demo`: the whole pipeline on a built-in simulated brain, scored against its ground truth."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from clarity_fast.baselines import log_blobs
from clarity_fast.errors import OutputError
from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, Match, best_threshold, match_points
from clarity_fast.io.atomic import undone_on_failure
from clarity_fast.io.points import read_points
from clarity_fast.run_detect import DetectReport, DetectRequest, run_detection
from clarity_fast.simulate import VOLUME_NAME, SimulationSettings, brain_files, write_brain


DEMO_MARKER = ".clarity-fast-demo"  # in a folder the demo made: its next run may replace what lies there


@dataclass(frozen=True)
class DemoReport:
    """What `demo` made and found, for its printout."""

    volume: Path
    cells: int
    simulate_s: float
    detection: DetectReport
    match: Match
    log_f1: float

    def lines(self) -> list[str]:
        m = self.match
        return [
            f"simulated brain {tuple(self.detection.summary['shape'])} with {self.cells} cells in {self.simulate_s:.1f} s -> {self.volume}",
            *self.detection.lines(),
            f"against the simulated truth: precision {m.precision:.3f}, recall {m.recall:.3f}, F1 {m.f1:.3f} "
            f"(TP {m.tp}, FP {m.fp}, FN {m.fn}; within {RADIUS_VOXELS} voxels, z counted double)",
            f"for comparison, a plain LoG blob detector at the threshold best for this very volume: F1 {self.log_f1:.3f}",
        ]


def run_demo(*, out_dir: Path, settings: SimulationSettings) -> DemoReport:
    """Simulate a brain into out_dir, detect its cells with the built-in model and score them; a failed demo leaves
    none of the files it made."""
    request = DetectRequest(volume=out_dir / VOLUME_NAME, out=out_dir / "detections.csv", preview=out_dir / "detections.png")
    volume, cells, folder = brain_files(out_dir)
    marker = out_dir / DEMO_MARKER
    theirs = [p.name for p in (volume, cells) if p.exists()]
    if theirs and not marker.is_file():  # an earlier demo's files are ours to replace; a brain the user simulated is not
        raise OutputError(f"{out_dir} already holds {' and '.join(theirs)}, not made by a demo; give the demo another --out folder")
    with undone_on_failure(volume, cells, request.out, request.summary_path, request.preview, request.checkpoint_path, marker, folder):
        start = time.perf_counter()
        brain = write_brain(out_dir, settings=settings)
        simulate_s = time.perf_counter() - start
        detection = run_detection(request)
        marker.write_text("made by clarity-fast demo, which may replace the files beside it\n")
    truth = brain.cells.zyx
    match = match_points(pred=read_points(request.out).zyx, truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
    peaks, response = log_blobs(brain.volume(), scale=settings.scale)
    _, log_match = best_threshold(pred=peaks, scores=response, truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
    return DemoReport(volume=request.volume, cells=len(truth), simulate_s=simulate_s, detection=detection, match=match, log_f1=log_match.f1)
