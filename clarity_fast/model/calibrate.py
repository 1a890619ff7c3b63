"""Fitting the Calibration on validation candidates: a three-parameter logistic regression of "at an annotated
cell" on the network's logit and the log prefilter response, so the threshold is chosen on what detection uses."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from clarity_fast.model.config import Calibration, log_response

RIDGE = 1.0  # a light pull of both weights towards zero: keeps them finite when validation data separate perfectly


def fit_calibration(*, logits: np.ndarray, response: np.ndarray, labels: np.ndarray) -> Calibration:
    """The Calibration that best predicts `labels` (bool per candidate); the identity without both classes."""
    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return Calibration()
    x = np.column_stack([np.asarray(logits, dtype=np.float64), log_response(response), np.ones(len(labels))])
    y = labels.astype(np.float64)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z, weights = x @ w, np.array([w[0], w[1], 0.0])  # the bias is not pulled
        value = float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * RIDGE * weights @ weights)
        return value, x.T @ (expit(z) - y) + RIDGE * weights

    w = minimize(loss, np.array([1.0, 0.0, 0.0]), jac=True, method="L-BFGS-B").x
    return Calibration(logit_weight=float(w[0]), response_weight=float(w[1]), bias=float(w[2]))
