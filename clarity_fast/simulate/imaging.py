"""How a light-sheet microscope turns a scene into counts: PSF blur, autofluorescent background,
stripes, attenuation, Poisson–Gaussian noise. Each brain draws its own conditions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
PSF_TRUNCATE = 4.0  # gaussian_filter's truncate: the blur of a plane reaches this many sigmas
HAZE_SPACING_UM = 120.0  # scale of the low-frequency background


@dataclass(frozen=True)
class Imaging:
    """One acquisition's conditions; intensities are camera counts."""

    background: float  # mean autofluorescent background
    gain: float  # counts per detected photon (sets the shot noise)
    read_noise: float  # counts rms
    offset: float  # camera baseline
    psf_fwhm: tuple[float, float, float]  # µm along (z, y, x)
    haze_amplitude: float  # relative amplitude of the low-frequency background
    stripe_amplitude: float  # light-sheet stripes (log-amplitude, along x)
    attenuation_z: float  # µm: depth attenuation length
    attenuation_x: float  # µm: attenuation along the light sheet's path


def sample_imaging(*, difficulty: float, rng: np.random.Generator) -> Imaging:
    """Draw conditions: harder means noisier, blurrier, stripier, more uneven."""
    d = float(np.clip(difficulty, 0.0, 1.0))
    background = rng.uniform(300.0, 2500.0)
    relative_noise = rng.uniform(0.03, 0.06) + 0.06 * d  # shot noise at the background level
    return Imaging(
        background=background,
        gain=relative_noise**2 * background,
        read_noise=rng.uniform(2.0, 10.0),
        offset=100.0,
        psf_fwhm=(rng.uniform(3.0, 6.0) + 4.0 * d, *(rng.uniform(1.2, 2.5) + d,) * 2),
        haze_amplitude=(0.1 + 0.4 * d) * rng.uniform(0.5, 1.0),
        stripe_amplitude=(0.03 + 0.15 * d) * rng.uniform(0.5, 1.0),
        attenuation_z=rng.uniform(600.0, 3000.0) / max(d, 0.05),
        attenuation_x=rng.uniform(1500.0, 6000.0) / max(d, 0.05),
    )


class Microscope:
    """Turns blurred-ready foreground planes into uint16 counts for one brain of fixed shape."""

    def __init__(self, *, imaging: Imaging, shape: tuple[int, int, int], voxel_size: tuple[float, float, float], rng: np.random.Generator) -> None:
        self.imaging = imaging
        self.voxel = np.asarray(voxel_size, dtype=float)
        self.sigma = np.asarray(imaging.psf_fwhm) * FWHM_TO_SIGMA / self.voxel
        self.halo = int(np.ceil(PSF_TRUNCATE * self.sigma[0])) + 1
        positions = [np.arange(n) * v for n, v in zip(shape, self.voxel)]
        # Low-frequency haze: random weights on a coarse grid, spread by Gaussian bumps (separable).
        weights = []
        for pos in positions:
            nodes = np.arange(-HAZE_SPACING_UM, pos[-1] + 2 * HAZE_SPACING_UM, HAZE_SPACING_UM)
            w = np.exp(-(((pos[:, None] - nodes[None]) / HAZE_SPACING_UM) ** 2))
            weights.append((w / w.sum(axis=1, keepdims=True)).astype(np.float32))
        coeff = rng.normal(size=tuple(w.shape[1] for w in weights)).astype(np.float32) * 2.0
        self._haze_z = weights[0]
        self._haze_yx = np.einsum("abc,yb,xc->ayx", coeff, weights[1], weights[2], optimize=True)
        # Stripes run along x (the sheet's direction) and drift slowly with z.
        stripe_sigma = 3.0 / self.voxel[1]
        profiles = gaussian_filter1d(rng.normal(size=(2, shape[1])), stripe_sigma, axis=1, mode="wrap")
        profiles /= profiles.std(axis=1, keepdims=True) + 1e-12
        self._stripes = profiles.astype(np.float32)
        self._stripe_phase = rng.uniform(0, 2 * np.pi)
        self._atten_x = np.exp(-positions[2] / imaging.attenuation_x).astype(np.float32)
        self._z_um = positions[0]

    def _illumination(self, z0: int, z1: int) -> np.ndarray:
        """Multiplicative field of stripes and attenuation for planes z0..z1, shape (nz, Y, X)."""
        z = self._z_um[z0:z1]
        mix = (0.5 + 0.5 * np.cos(z / 150.0 + self._stripe_phase)).astype(np.float32)[:, None]
        stripe = mix * self._stripes[0][None] + (1 - mix) * self._stripes[1][None]
        gain_zy = np.exp(self.imaging.stripe_amplitude * stripe) * np.exp(-z / self.imaging.attenuation_z)[:, None]
        return gain_zy.astype(np.float32)[:, :, None] * self._atten_x[None, None, :]

    def _haze(self, z0: int, z1: int) -> np.ndarray:
        field = np.tensordot(self._haze_z[z0:z1], self._haze_yx, axes=(1, 0))
        return np.maximum(1.0 + self.imaging.haze_amplitude * field, 0.2)

    def expose(self, foreground: np.ndarray, *, z0: int, z1: int, rng: np.random.Generator) -> np.ndarray:
        """Counts for planes z0..z1 from foreground rendered over z0-halo..z1+halo (uint16)."""
        blurred = gaussian_filter(foreground, self.sigma, mode="constant", truncate=PSF_TRUNCATE)
        core = blurred[self.halo : self.halo + (z1 - z0)]
        im = self.imaging
        expected = self._illumination(z0, z1) * (im.background * (self._haze(z0, z1) + core))
        photons = rng.poisson(np.maximum(expected, 0.0) / im.gain)
        counts = photons * im.gain + rng.normal(im.offset, im.read_noise, size=photons.shape)
        return np.clip(np.rint(counts), 0, np.iinfo(np.uint16).max).astype(np.uint16)
