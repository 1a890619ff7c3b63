"""CellNet with its 3D convolutions written as 2D ones, for export: the same arithmetic, a faster graph on CPUs.

onnxruntime's CPU kernels run 3D convolutions through a generic path, while 2D ones get its blocked, vectorised
kernels. A z-tap convolution over planes equals a 2D convolution whose input channels are the planes of a z
window (and, for later layers, the channels of each), so each output plane becomes one 2D convolution over a
window of input planes, batched with the patch axis. Same multiply-adds as the 3D network, logits within float
rounding of it (batch norm is folded into the convolutions, as the exporter would do anyway). cellnet_from_planar
goes back, so that an exported model (the built-in one) can be trained on.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clarity_fast.model.config import NetworkConfig
from clarity_fast.model.network import CellNet


class PlanarCellNet(nn.Module):
    """A CellNet in eval mode, as z-windowed 2D convolutions; (N, 1, P, P, P) -> N logits, like the original."""

    def __init__(self, net: CellNet) -> None:
        super().__init__()
        features, head = net.features, net.head
        self.patch, self.width = net.config.patch, net.config.width
        self.planes = self.patch - 4  # after the valid 5³ convolution
        self.pooled = self.planes // 2
        self.conv1 = _planar_conv(*_folded(features[0], features[1]), padding=0)
        self.conv2 = _planar_conv(*_folded(features[4], features[5]), padding=1)
        self.conv3 = _planar_conv(*_folded(features[7], features[8]), padding=1)
        dense, self.out = head[1], head[4]
        # The 3D network flattens (channel, z, y, x); this one holds (z, channel, y, x).
        weight = dense.weight.detach().reshape(dense.out_features, self.width, self.pooled, self.pooled * self.pooled)
        self.dense = nn.Linear(dense.in_features, dense.out_features)
        self.dense.weight.data = weight.transpose(1, 2).reshape(dense.out_features, -1).contiguous()
        self.dense.bias.data = dense.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, p = x.shape[0], self.patch
        y = _z_windows(x.reshape(n, p, 1, p, p), taps=5, pad=0)  # (N * planes, 5, P, P)
        y = F.max_pool2d(torch.relu(self.conv1(y)), 2)  # (N * planes, width, pooled, pooled)
        y = y.reshape(n, self.planes, self.width, self.pooled, self.pooled)[:, : 2 * self.pooled]
        y = y.reshape(n, self.pooled, 2, self.width, self.pooled, self.pooled).amax(dim=2)  # pooled along z
        for conv in (self.conv2, self.conv3):
            y = torch.relu(conv(_z_windows(y, taps=3, pad=1))).reshape(n, self.pooled, self.width, self.pooled, self.pooled)
        hidden = torch.relu(self.dense(y.reshape(n, -1)))
        return self.out(hidden).squeeze(1)


def _z_windows(x: torch.Tensor, *, taps: int, pad: int) -> torch.Tensor:
    """(N, Z, C, Y, X) -> (N * Z', taps * C, Y, X): for each output plane, the `taps` planes it sees (zero-padded
    by `pad` at both ends) stacked as channels, plane-major."""
    n, _, c, h, w = x.shape
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, 0, pad, pad))
    planes = x.shape[1] - taps + 1
    windows = torch.stack([x[:, k : k + planes] for k in range(taps)], dim=2)  # (N, Z', taps, C, Y, X)
    return windows.reshape(n * planes, taps * c, h, w)


def _planar_conv(weight: torch.Tensor, bias: torch.Tensor, *, padding: int) -> nn.Conv2d:
    """The 2D convolution over z windows that a 3D convolution's (out, in, kz, ky, kx) weight amounts to."""
    out, inp, kz, ky, kx = weight.shape
    conv = nn.Conv2d(kz * inp, out, (ky, kx), padding=padding)
    conv.weight.data = weight.transpose(1, 2).reshape(out, kz * inp, ky, kx).contiguous()  # channels plane-major
    conv.bias.data = bias
    return conv


def _folded(conv: nn.Conv3d, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A convolution's weight and bias with the batch norm after it (if any) folded in, in eval semantics."""
    weight, bias = conv.weight.detach().clone(), conv.bias.detach().clone()
    if isinstance(norm, nn.BatchNorm3d):
        scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
        weight = weight * scale.reshape(-1, 1, 1, 1, 1)
        bias = (bias - norm.running_mean) * scale + norm.bias.detach()
    return weight, bias


def cellnet_from_planar(weights: dict[str, np.ndarray], *, config: NetworkConfig) -> CellNet:
    """The CellNet (in eval mode) whose PlanarCellNet has these weights (an exported graph's initializers): the
    logits of the planar graph, within float rounding. Batch norm came folded into the convolutions, so its layers
    are identities here (their statistics fixed: keep them in eval mode when training on, as fine-tuning does)."""
    net = CellNet(config)
    features, head = net.features, net.head
    convs = ((features[0], "conv1"), (features[4], "conv2"), (features[7], "conv3"))
    pooled = (config.patch - 4) // 2
    expected = {f"{name}.weight": (c.out_channels, c.kernel_size[0] * c.in_channels, *c.kernel_size[1:]) for c, name in convs}
    expected |= {f"{name}.bias": (c.out_channels,) for c, name in convs}
    expected |= {"dense.weight": (config.hidden, config.width * pooled**3), "dense.bias": (config.hidden,), "out.weight": (1, config.hidden), "out.bias": (1,)}
    given = {k: tuple(np.shape(v)) for k, v in weights.items()}
    wrong = {k: given.get(k, "missing") for k, shape in expected.items() if given.get(k) != shape}
    if wrong:
        raise ValueError(f"the weights do not fit a planar CellNet of {config}: {', '.join(f'{k} {v}' for k, v in wrong.items())}")
    for conv, name in convs:
        out, inp, kz, ky, kx = conv.weight.shape
        planar = torch.tensor(weights[f"{name}.weight"], dtype=torch.float32)
        conv.weight.data = planar.reshape(out, kz, inp, ky, kx).transpose(1, 2).contiguous()
        conv.bias.data = torch.tensor(weights[f"{name}.bias"], dtype=torch.float32)
    dense, last = head[1], head[4]
    planar = torch.tensor(weights["dense.weight"], dtype=torch.float32)
    dense.weight.data = planar.reshape(config.hidden, pooled, config.width, pooled**2).transpose(1, 2).reshape(config.hidden, -1).contiguous()
    dense.bias.data = torch.tensor(weights["dense.bias"], dtype=torch.float32)
    last.weight.data = torch.tensor(weights["out.weight"], dtype=torch.float32)
    last.bias.data = torch.tensor(weights["out.bias"], dtype=torch.float32)
    for norm in (features[1], features[5], features[8]):
        if isinstance(norm, nn.BatchNorm3d):
            norm.weight.data.fill_(1.0)
            norm.bias.data.zero_()
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)  # so that it divides by exactly 1
    return net.eval()
