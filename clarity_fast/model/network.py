"""The patch classifier: a small 3D CNN from a P×P×P patch to one logit (cell vs not)."""

from __future__ import annotations

import torch
from torch import nn

from clarity_fast.model.config import NetworkConfig


class CellNet(nn.Module):
    """conv5³ (valid) -> pool 2 -> conv3³ -> conv3³ -> dense -> dropout -> logit."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        norm = (lambda c: nn.BatchNorm3d(c)) if config.batch_norm else (lambda c: nn.Identity())
        after_conv = config.patch - 4
        if after_conv < 2:
            raise ValueError(f"patch size {config.patch} is too small for a 5³ convolution and pooling")
        pooled = after_conv // 2
        self.features = nn.Sequential(
            nn.Conv3d(1, w, 5),
            norm(w),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(2),
            nn.Conv3d(w, w, 3, padding=1),
            norm(w),
            nn.ReLU(inplace=True),
            nn.Conv3d(w, w, 3, padding=1),
            norm(w),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(w * pooled**3, config.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)
