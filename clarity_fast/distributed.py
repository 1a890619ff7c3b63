"""Detection on a Dask cluster: each task runs the single-process pipeline on a run of whole slabs.

A slab's candidates depend only on its own planes and their halo (read by the task itself), and duplicates
are merged once over the whole volume on the client, so the cluster's result equals the single-process run
exactly, whatever the number of workers or the order tasks finish in. Workers keep one onnxruntime session
per model file content for the life of the process. A task lost with its worker is rerun by Dask on another.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from clarity_fast.errors import ClarityError, ClusterError, InputError
from clarity_fast.export.model_file import model_digest
from clarity_fast.export.providers import available_cores
from clarity_fast.export.runtime import OnnxScorer, RuntimeSettings
from clarity_fast.io.volumes import open_volume
from clarity_fast.pipeline import DetectSettings, SlabResult, process_slabs
from clarity_fast.plane_levels import LevelledReader

TASK_RETRIES = 3  # a task whose worker dies is resubmitted; this many failures of its own fail the run
_SESSIONS: dict[tuple, OnnxScorer] = {}  # per worker process: one session per model and runtime
_SESSIONS_LOCK = threading.Lock()


@dataclass(frozen=True)
class ClusterSettings:
    scheduler: str | None = None  # address of a running scheduler, e.g. tcp://host:8786
    workers: int | None = None  # or: a LocalCluster of this many single-threaded processes

    def __post_init__(self) -> None:
        if self.scheduler is not None and not self.scheduler.strip():  # Dask would quietly start a cluster of its own
            raise InputError("--scheduler is empty; give a running scheduler's address, e.g. tcp://host:8786")
        if self.scheduler is None and (self.workers is None or self.workers < 1):
            raise InputError("--workers must be >= 1 (or give --scheduler)")
        if self.scheduler is not None and self.workers is not None:
            raise InputError("give --scheduler or --workers, not both")


def _scorer(model: Path, runtime: RuntimeSettings) -> OnnxScorer:
    """This worker's session for the model file as it is now: keyed by content, so a model exported again to the
    same path between two runs on a long-lived cluster is loaded afresh, not scored with the old weights."""
    key = (str(model), model_digest(model), runtime)
    with _SESSIONS_LOCK:  # a worker's threads may ask at once: one session each, not one per thread
        if key not in _SESSIONS:
            _SESSIONS[key] = OnnxScorer(model, settings=runtime)
        return _SESSIONS[key]


def detect_slabs(
    *, volume: str, channel: int | None, model: str, runtime: RuntimeSettings, settings: DetectSettings, slabs: list[tuple[int, int]]
) -> tuple[list[SlabResult], dict[str, float]] | ClarityError:
    """One task: open the volume, score the given slabs with this worker's session. An error of the user's making
    (NaN in a plane, say) is returned, not raised: raised, Dask would retry the task and log each failure with its
    traceback on the worker; returned, the client raises it as one line."""
    try:
        return _detect_slabs(volume=volume, channel=channel, model=model, runtime=runtime, settings=settings, slabs=slabs)
    except ClarityError as error:
        return error


def _detect_slabs(
    *, volume: str, channel: int | None, model: str, runtime: RuntimeSettings, settings: DetectSettings, slabs: list[tuple[int, int]]
) -> tuple[list[SlabResult], dict[str, float]]:
    if runtime.threads is not None:  # share the machine with the other workers of a LocalCluster
        import numba

        numba.set_num_threads(min(runtime.threads, numba.config.NUMBA_NUM_THREADS))
    scorer = _scorer(Path(model), runtime)
    results: list[SlabResult] = []
    seconds: dict[str, float] = {}
    with LevelledReader(open_volume(Path(volume), channel=channel)) as reader:
        process_slabs(reader, scorer=scorer, model=scorer.config, settings=settings, slabs=slabs, on_result=results.append, seconds=seconds)
    return results, seconds


def run_on_cluster(
    slabs: list[tuple[int, int]],
    on_result: Callable[[SlabResult], None],
    seconds: dict[str, float],
    *,
    volume: Path,
    channel: int | None,
    model: Path,
    runtime: RuntimeSettings,
    settings: DetectSettings,
    cluster: ClusterSettings,
) -> None:
    """pipeline.detect's slab runner on a cluster: submit runs of slabs, hand over results as they finish."""
    from dask.distributed import Client, LocalCluster, as_completed

    local = None
    if cluster.scheduler is None:
        # Our own cluster's logs are no news to the user: a task cancelled when another failed, or a worker's heartbeat
        # failing, traceback and all, when the scheduler closes first after an error. What fails in a task comes back
        # through its future (and a lost worker as KilledWorker), so only Dask's critical lines are let through.
        local = LocalCluster(
            n_workers=cluster.workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL
        )
        if runtime.threads is None:
            runtime = replace(runtime, threads=max(1, available_cores() // cluster.workers))
    try:
        with (_client(cluster.scheduler) if local is None else Client(local)) as client:
            futures = [
                client.submit(
                    detect_slabs, volume=str(Path(volume).resolve()), channel=channel, model=str(Path(model).resolve()),
                    runtime=runtime, settings=settings, slabs=[slab], retries=TASK_RETRIES, pure=False,
                )
                for slab in slabs  # one task per slab: a lost worker costs one slab, and results arrive in slab steps
            ]
            for future in as_completed(futures):
                outcome = future.result()
                if isinstance(outcome, ClarityError):
                    raise outcome
                results, busy = outcome
                for stage, value in busy.items():
                    seconds[stage] = seconds.get(stage, 0.0) + value
                for result in results:
                    on_result(result)
    finally:
        if local is not None:
            local.close()


def _client(address: str):
    """A client of the scheduler at `address`; one Dask cannot parse or reach is one line (a missing port, an
    unknown scheme, a tls:// address without certificates, nothing listening: Dask raises ValueError, TypeError or
    OSError), and a ClusterError, which leaves a checkpoint's finished slabs for --resume."""
    from dask.distributed import Client

    try:
        return Client(address)
    except (OSError, ValueError, TypeError) as exc:  # TimeoutError is an OSError
        raise ClusterError(f"cannot connect to the Dask scheduler at {address}: {' '.join(str(exc).split())}") from exc
