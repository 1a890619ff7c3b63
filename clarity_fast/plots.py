"""Figures people look at: learning curves and ROC curves (matplotlib, from the `train` extra)."""

from __future__ import annotations

from pathlib import Path

from clarity_fast.io.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    """Write the figure atomically as PNG and free it, whether or not the write succeeds."""
    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)


def learning_curve(history: list[dict], path: Path) -> None:
    """Training and validation loss, and validation AUC, per epoch."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, auc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    marker = "o" if len(epochs) < 2 else None  # a single epoch is a point, which a line alone would not show
    loss_ax.plot(epochs, [h["train_loss"] for h in history], label="train", marker=marker)
    loss_ax.plot(epochs, [h["val_loss"] for h in history], label="validation", marker=marker)
    loss_ax.set(xlabel="epoch", ylabel="loss (BCE)")
    loss_ax.legend()
    auc_ax.plot(epochs, [h["val_auc"] for h in history], color="C2", marker=marker)
    auc_ax.set(xlabel="epoch", ylabel="validation patch AUC")
    _save(plt, fig, path)


def roc_curves(curves: dict[str, list[tuple]], path: Path, *, title: str) -> None:
    """One panel per method, one line per fold."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 4), squeeze=False)
    for ax, (method, folds) in zip(axes[0], curves.items()):
        for i, (fpr, tpr) in enumerate(folds):
            ax.plot(fpr, tpr, lw=1, label=f"fold {i}")
        ax.plot([0, 1], [0, 1], "k:", lw=0.5)
        ax.set(title=method, xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    _save(plt, fig, path)
