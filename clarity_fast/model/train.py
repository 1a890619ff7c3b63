"""Training: AdamW on balanced, augmented patches; early stopping on validation AUC; the detection
threshold chosen where the mean validation F1 over groups (weighted by their cells' reliability) peaks.
Deterministic for a seed. From a new network, or on from a trained one (fine-tuning: model.start).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from clarity_fast.detection import logits_at
from clarity_fast.errors import InputError
from clarity_fast.evaluate import Scored, balanced_threshold, pool_volumes, roc_auc
from clarity_fast.export.providers import available_cores
from clarity_fast.model.augment import augment
from clarity_fast.model.calibrate import fit_calibration
from clarity_fast.model.config import DEFAULT_EPOCHS, Calibration, ModelConfig, NetworkConfig
from clarity_fast.model.network import CellNet
from clarity_fast.model.samples import AnnotatedVolume, epoch_examples, evaluation_examples
from clarity_fast.model.start import StartingModel
from clarity_fast.model.store import TorchScorer
from clarity_fast.progress import progress_bar, step
from clarity_fast.settings import Scale
from clarity_fast.volume_share import estimate_share, histogram

log = logging.getLogger("clarity_fast")
VALIDATE_BY = ("volume", "group")
VALIDATION_BATCH = 2048  # validation patches per forward pass after each epoch
# Fine-tuning's defaults (README, "Fine-tuning"): a tenth of the learning rate, so that a few dozen cells adjust
# what the network knows rather than overwrite it, and fewer epochs.
FINE_TUNE_LEARNING_RATE = 1e-4
FINE_TUNE_EPOCHS = 30


@dataclass(frozen=True)
class TrainSettings:
    """The training recipe; recorded in the model's training record, so a model says how it was made."""

    network: NetworkConfig = field(default_factory=NetworkConfig)
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 40  # epochs without a better validation AUC before stopping
    seed: int = 0
    validation_fraction: float = 0.2  # of the cells, held out (whole volumes or groups) for early stopping and the threshold
    validate_by: str = "volume"  # hold out whole volumes, or whole groups (see split_validation)


@dataclass(frozen=True)
class Trained:
    """A trained network with its config (scale, threshold, calibration) and the per-epoch record."""

    net: CellNet
    config: ModelConfig
    history: list[dict]


def split_validation(volumes: list[AnnotatedVolume], *, fraction: float, seed: int, by: str = "volume") -> tuple[list, list]:
    """Hold out whole volumes (by="volume") or whole groups (by="group"), in random order until they hold
    `fraction` of the cells, for validation.

    Counting cells, not volumes, keeps the validation set from being a few near-empty volumes, whose
    best threshold would not suit dense ones; units without cells stay in training (they give no AUC, and a
    validation set of them alone would keep the untrained network). With one unit, or no other with cells, it
    validates on the training volumes. By volume, a brain split into several volumes may sit on both sides, so its
    validation AUC reads optimistic; by group, validation sees only brains training did not, at the cost of
    training on fewer of them (see the README's cross-validation notes for what each gave on delivr_cfos).
    """
    if by not in VALIDATE_BY:
        raise ValueError(f"validation is drawn by {' or '.join(VALIDATE_BY)}, got {by!r}")
    keys = list(range(len(volumes))) if by == "volume" else [v.group for v in volumes]
    units = list(dict.fromkeys(keys))
    cells = {u: 0 for u in units}
    for key, v in zip(keys, volumes):
        cells[key] += len(v.truth)
    order = [units[i] for i in np.random.default_rng(seed).permutation(len(units)) if cells[units[i]]]
    if len(order) < 2:
        return volumes, volumes
    total = sum(cells.values())
    held, count = set(), 0
    for unit in order[:-1]:  # training keeps at least one unit with cells
        held.add(unit)
        count += cells[unit]
        if count >= fraction * total:
            break
    return [v for k, v in zip(keys, volumes) if k not in held], [v for k, v in zip(keys, volumes) if k in held]


def recorded_scale(volumes: list[AnnotatedVolume]) -> Scale:
    """The scale the model records, whose cell diameter is detect's default: the manifest's first volume's (each
    volume is resampled to its own cells' working scale, so the network sees all alike); a warning where their
    diameters differ, as detect cannot know which of them the user's cells are like."""
    diameters = sorted({v.scale.cell_diameter for v in volumes})
    if len(diameters) > 1:
        log.warning("the volumes give cell diameters of %s µm; the model records the first volume's, %g µm, as detect's "
                    "default (list first a volume of the size detect should assume, or give detect --cell-diameter)",
                    ", ".join(f"{d:g}" for d in diameters), volumes[0].scale.cell_diameter)
    return volumes[0].scale


def calibrate(net: CellNet, volumes: list[AnnotatedVolume], *, patch: int) -> tuple[Calibration, list[np.ndarray]]:
    """The Calibration fitted on the validation volumes' candidates (labelled by whether they lie at an
    annotated cell), and the network's logits for every candidate read (AnnotatedVolume.detectable)."""
    scorer = TorchScorer(net)
    every = [logits_at(v.native, centres=v.detectable.zyx, scorer=scorer, patch=patch, grid=v.grid) for v in volumes]
    logits = [logit[: len(v.candidates)] for v, logit in zip(volumes, every)]  # the annotated block's candidates
    labels = [v.at_cells for v in volumes]
    response = [v.candidates.response for v in volumes]
    calibration = fit_calibration(logits=np.concatenate(logits), response=np.concatenate(response), labels=np.concatenate(labels))
    # What detect adapts to a volume's share of cells from (volume_share): the share over all validation
    # candidates (their mean probability, what the calibration was fitted at), and the largest share of any one
    # validation volume, estimated as detect estimates a volume's, so that none of them would be adapted.
    probs = [calibration.probability(l, r) for l, r in zip(logits, response) if len(l)]
    if probs:
        share = float(np.concatenate(probs).mean())
        reference = max(estimate_share(histogram(p), prior=share) for p in probs)
        calibration = replace(calibration, share=share, reference_share=reference)
    return calibration, every


def choose_threshold(volumes: list[AnnotatedVolume], *, logits: list[np.ndarray], calibration: Calibration) -> tuple[float, dict]:
    """The probability threshold with the best mean detection F1 over the validation groups (each group, a
    dataset or a brain, counts about the same, one of a few cells less: evaluate.balanced_threshold), matching
    within a cell radius, each annotated block scored as `evaluate --region` scores it; and the pooled result there.
    `logits`: calibrate's, for every candidate read."""
    by_group: dict[str, list[Scored]] = {}
    for v, logit in zip(volumes, logits):
        by_group.setdefault(v.group, []).append(v.detected(logit, calibration=calibration))
    scale = volumes[0].scale
    rule = dict(radius=scale.cell_diameter / 2, axis_scale=scale.voxel_size)  # the same in every working grid
    threshold, mean_f1 = balanced_threshold([pool_volumes(items) for items in by_group.values()], **rule)
    match = pool_volumes([item for items in by_group.values() for item in items]).match(threshold=threshold, **rule)
    return threshold, dict(match.summary(), mean_group_f1=mean_f1, groups=len(by_group))


def train(
    volumes: list[AnnotatedVolume],
    *,
    settings: TrainSettings,
    prefilter_threshold: float,
    start: StartingModel | None = None,
    progress: bool | None = None,
) -> Trained:
    """Fit a CellNet on the volumes (a share held out for validation) and pick its detection threshold; from
    `start`'s weights where given (its network config must be settings.network), with batch norm's statistics
    kept as they are, since a few dozen cells' batches would give noisier ones."""
    if start is not None and start.config.network != settings.network:
        raise ValueError(f"settings.network {settings.network} is not the starting model's {start.config.network}")
    torch.manual_seed(settings.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(available_cores())
    rng = np.random.default_rng(settings.seed)
    patch = settings.network.patch
    if not any(len(v.truth) for v in volumes):
        raise InputError("no annotated cells in any volume of the manifest: there is nothing to learn from")
    train_set, val_set = split_validation(
        volumes, fraction=settings.validation_fraction, seed=settings.seed, by=settings.validate_by
    )
    if val_set is train_set:
        log.warning(f"one {settings.validate_by} with cells: validation (early stopping, calibration, threshold) runs on the training data")
    val_x, val_y = evaluation_examples(val_set, patch=patch, seed=settings.seed)
    if len(np.unique(val_y)) < 2:  # no AUC to stop on: the untrained network would be kept
        kind = "no examples" if not val_y.size else "only cells" if val_y[0] == 1 else "only non-cells"
        raise InputError(
            f"the validation volumes ({', '.join(v.name for v in val_set)}) give {kind}: annotate more volumes, or "
            "check that --voxel-size and --cell-diameter let the prefilter find candidates away from the cells"
        )
    scale = recorded_scale(volumes)
    quarter_turns = abs(scale.voxel_size[1] - scale.voxel_size[2]) < 1e-6 * scale.voxel_size[1]

    net = CellNet(settings.network) if start is None else copy.deepcopy(start.net)
    optimiser = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    # Cosine decay over the planned epochs: large steps early, fine ones at the end, where AUC still creeps up.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.epochs)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history: list[dict] = []
    # A starting model competes as it is: where no epoch beats its validation AUC, it is kept (recalibrated).
    start_auc = None if start is None else roc_auc(TorchScorer(net, batch=VALIDATION_BATCH)(val_x), val_y)
    best_auc, best_state, stale = -1.0 if start_auc is None else start_auc, copy.deepcopy(net.state_dict()), 0
    with progress_bar(total=settings.epochs, description="training", enabled=progress) as bar:
        for epoch in range(1, settings.epochs + 1):
            began = time.perf_counter()
            x, y = epoch_examples(train_set, patch=patch, rng=rng)
            x = augment(x, rng=rng, quarter_turns=quarter_turns)
            order = rng.permutation(len(x))
            _train_mode(net, fixed_norm=start is not None)
            losses = []
            for i in range(0, len(order), settings.batch_size):
                idx = order[i : i + settings.batch_size]
                optimiser.zero_grad()
                loss = loss_fn(net(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
                loss.backward()
                optimiser.step()
                losses.append(float(loss.detach()) * len(idx))
            schedule.step()
            logits = TorchScorer(net, batch=VALIDATION_BATCH)(val_x)
            val_loss = float(loss_fn(torch.from_numpy(logits), torch.from_numpy(val_y)))
            auc = roc_auc(logits, val_y)
            history.append(
                dict(epoch=epoch, train_loss=sum(losses) / len(x), val_loss=val_loss, val_auc=auc, seconds=time.perf_counter() - began)
            )
            step(bar, status=f"val AUC {auc:.4f}")
            if auc > best_auc:
                best_auc, best_state, stale = auc, copy.deepcopy(net.state_dict()), 0
            else:
                stale += 1
                if stale >= settings.patience:
                    break
    net.load_state_dict(best_state)
    net.eval()
    calibration, val_logits = calibrate(net, val_set, patch=patch)
    threshold, val_detection = choose_threshold(val_set, logits=val_logits, calibration=calibration)
    if not np.isfinite(threshold):  # no candidate in the validation volumes
        raise InputError(
            f"the prefilter finds no candidates in the validation volumes ({', '.join(v.name for v in val_set)}); "
            "check their --voxel-size and --cell-diameter"
        )
    config = ModelConfig(
        network=settings.network,
        voxel_size=scale.voxel_size,
        cell_diameter=scale.cell_diameter,
        threshold=threshold,
        prefilter_threshold=prefilter_threshold,
        calibration=calibration,
        training=dict(
            settings={k: v for k, v in asdict(settings).items() if k != "network"},
            **(dict(start=dict(start.record(), val_auc=start_auc)) if start is not None else {}),  # the model trained on from
            train_volumes=[v.name for v in train_set],
            volume_scales={v.name: dict(voxel_size=[w * f for w, f in zip(v.scale.voxel_size, v.grid.factors)], cell_diameter=v.scale.cell_diameter)
                           for v in volumes},  # as read (z finer where cells looked elongated), for the record
            validation_volumes=[v.name for v in val_set],
            train_cells=int(sum(len(v.truth) for v in train_set)),
            epochs_run=len(history),
            best_val_auc=best_auc,
            val_detection=val_detection,
        ),
    )
    return Trained(net=net, config=config, history=history)


def _train_mode(net: CellNet, *, fixed_norm: bool) -> None:
    """Training mode (dropout on); with fixed_norm, batch norm keeps normalising by its stored statistics."""
    net.train()
    if fixed_norm:
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.eval()
