"""Simulated single-particle projections with ground truth (thesis 6.1-6.3, 7.4; SPEC Part C).

Clean projections come from ASPIRE-Python: one or several random asymmetric densities (sums of
Gaussian "atoms", ``aspire.volume.AsymmetricVolume``; each image shows one of them, drawn at
random) projected along uniformly random 3-D orientations (``aspire.source.Simulation`` with
unit amplitudes), optionally through a radial CTF. The stack is then scaled so that the clean
images have **unit mean energy on the particle disc**.

Centre convention: ASPIRE puts the projection origin at pixel ``(L // 2, L // 2)`` (``r = 0`` of
its ``grid_2d``), while this package's spiral, disc mask and rotations use the box centre
``((L - 1) / 2, (L - 1) / 2)`` (:func:`spiral_cnn.geometry.pixel_centres`). For even ``L`` the
two differ by half a pixel in x and y, so every projection is shifted by
:func:`aspire_centre_offset` (a band-limited Fourier shift, applied by ASPIRE's ``offsets``
before the noise) and the particles sit on the rotation centre the networks and the metrics use.

SNR convention (ASPIRE's, ``Simulation.true_snr``): ``SNR = P_signal / sigma_noise**2`` with
``P_signal`` the mean of ``clean**2`` over the disc pixels of all clean images and
``sigma_noise**2`` the per-pixel noise variance. After scaling the white-noise std is therefore
``1 / sqrt(SNR)``. :func:`measured_snr` checks it on the returned stack.

Noise models:

* ``gaussian``: ASPIRE ``WhiteNoiseAdder.from_snr`` (additive white Gaussian, thesis 6.3).
* ``poisson``: shot noise, the realistic case the thesis did not test (6.3). Expected electron
  counts ``lambda = dose * (1 - kappa * s)`` with ``s`` the normalised clean image and contrast
  ``kappa = 0.5 / max|s|``; counts ``~ Poisson(lambda)``; the observed image is
  ``(dose - counts) / (dose * kappa)``, whose mean is ``s`` and whose variance is
  ``lambda / (dose kappa)**2``. ``dose = SNR / kappa**2`` makes the noise variance ``1 / SNR`` at
  the mean dose, i.e. the same SNR convention; the noise is signal dependent.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ablation_paths._optional import require
from spiral_cnn.geometry import disc_mask

NOISE_MODELS = ("gaussian", "poisson", "none")


@dataclass
class SimConfig:
    """Simulation parameters.

    Attributes:
        n: number of particle images.
        size: image side ``L`` in pixels.
        snr: signal-to-noise ratio (see module docstring); thesis uses 1/4 and 1/64.
        noise: ``gaussian``, ``poisson`` or ``none``.
        ctf: apply a radial CTF (defocus 1.0-2.5 um, 300 kV, 5 distinct filters).
        atoms: number of Gaussian atoms in the density (``AsymmetricVolume`` ``K``).
        pixel_size: angstrom per pixel, written to the MRC header.
        seed: seeds the density, orientations and noise.
        volume_seed: seeds only the densities; ``None`` uses ``seed``. Use the same value for
            train and test stacks to image the *same* molecules in new orientations and noise,
            and different values to test on molecules the model has never seen.
        volumes: number of distinct molecules (``AsymmetricVolume`` ``C``); each image shows one,
            drawn uniformly at random.
    """

    n: int = 1024
    size: int = 32
    snr: float = 0.25
    noise: str = "gaussian"
    ctf: bool = False
    atoms: int = 64
    pixel_size: float = 1.0
    seed: int = 0
    volume_seed: int | None = None
    volumes: int = 1

    def __post_init__(self) -> None:
        if self.noise not in NOISE_MODELS:
            raise ValueError(f"noise must be one of {NOISE_MODELS}, got {self.noise!r}")
        if self.n < 1 or self.size < 8:
            raise ValueError(f"need n >= 1 and size >= 8, got n={self.n}, size={self.size}")
        if not (self.snr > 0 and np.isfinite(self.snr)):
            raise ValueError(f"snr must be positive and finite, got {self.snr}")
        if self.atoms < 1:
            raise ValueError(f"atoms must be >= 1, got {self.atoms}")
        if not (self.pixel_size > 0 and np.isfinite(self.pixel_size)):
            raise ValueError(f"pixel_size must be positive and finite, got {self.pixel_size}")
        if self.volumes < 1:
            raise ValueError(f"volumes must be >= 1, got {self.volumes}")
        if self.seed < 0 or (self.volume_seed is not None and self.volume_seed < 0):
            raise ValueError("seed and volume_seed must be non-negative")


@dataclass
class ParticleStack:
    """A stack of particle images with ground truth.

    Attributes:
        clean: ``(n, L, L)`` float32 noiseless projections (after CTF if any).
        noisy: ``(n, L, L)`` float32 observed images.
        angles: ``(n, 3)`` float64 ZYZ Euler angles (radians) of the projections.
        molecule: ``(n,)`` int64 index of the molecule (``0 .. volumes - 1``) each image shows.
        meta: provenance (configuration, measured SNR, library versions).
    """

    clean: NDArray[np.float32]
    noisy: NDArray[np.float32]
    angles: NDArray[np.float64]
    molecule: NDArray[np.int64]
    meta: dict[str, Any] = field(default_factory=dict)


def aspire_centre_offset(size: int) -> float:
    """Shift (pixels, ASPIRE ``offsets`` sign) that moves ASPIRE's origin to the box centre.

    ASPIRE's origin is pixel ``size // 2``; ours is ``(size - 1) / 2``. ASPIRE *subtracts* the
    offsets from the image content's position, so the offset is ``size // 2 - (size - 1) / 2``:
    ``0.5`` for even ``size`` and ``0`` for odd ``size``.
    """
    return size // 2 - (size - 1) / 2.0


def measured_snr(clean: NDArray[np.floating[Any]], noisy: NDArray[np.floating[Any]]) -> float:
    """``mean(clean**2) / var(noisy - clean)`` over the disc pixels of a ``(n, L, L)`` stack."""
    if clean.shape != noisy.shape or clean.ndim != 3:
        raise ValueError(f"need equal (n, L, L) stacks, got {clean.shape} and {noisy.shape}")
    m = disc_mask(clean.shape[-1])
    c = clean[:, m].astype(np.float64)
    return float(np.mean(c**2) / np.var(noisy[:, m].astype(np.float64) - c))


def _aspire_env() -> None:
    """Point ASPIRE's log directory at a temp dir unless the user configured ASPIRE.

    ASPIRE writes a log file into ``./logs`` on import by default; we do not want that in the
    user's working directory. Only sets ``ASPIREDIR`` when it is unset.
    """
    if "ASPIREDIR" in os.environ:
        return
    cfg_dir = Path(tempfile.gettempdir()) / "spiral_cnn_aspire"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    (cfg_dir / "config.yaml").write_text(
        f"logging:\n    log_dir: {cfg_dir / 'logs'}\n    console_level: WARNING\n"
        "    tqdm_disable: True\n    log_exceptions: 0\n"
    )
    os.environ["ASPIREDIR"] = str(cfg_dir)


def simulate(cfg: SimConfig) -> ParticleStack:
    """Simulate a particle stack with ASPIRE (see module docstring for the conventions)."""
    _aspire_env()
    aspire = require("aspire", extra="spiral-sim", purpose="simulating particle images")
    from aspire.noise import WhiteNoiseAdder
    from aspire.operators import RadialCTFFilter
    from aspire.source import Simulation
    from aspire.volume import AsymmetricVolume

    vseed = cfg.seed if cfg.volume_seed is None else cfg.volume_seed
    vol = AsymmetricVolume(
        L=cfg.size, C=cfg.volumes, K=cfg.atoms, seed=vseed, dtype=np.float64
    ).generate()
    filters = (
        [RadialCTFFilter(voltage=300, defocus=d) for d in np.linspace(1.0e4, 2.5e4, 5)]
        if cfg.ctf
        else None
    )
    noise_adder = (
        WhiteNoiseAdder.from_snr(cfg.snr, seed=cfg.seed) if cfg.noise == "gaussian" else None
    )
    # One simulation: ASPIRE computes the signal power of the clean images itself
    # (Simulation.true_signal_power, disc of radius L // 2) and sets the noise variance from it.
    src = Simulation(
        L=cfg.size,
        n=cfg.n,
        vols=vol,
        offsets=np.full((cfg.n, 2), aspire_centre_offset(cfg.size)),
        amplitudes=np.ones(cfg.n),
        unique_filters=filters,
        seed=cfg.seed,
        dtype=np.float64,
        pixel_size=cfg.pixel_size,
        noise_adder=noise_adder,
    )
    clean = src.clean_images[:].asnumpy()
    mask = disc_mask(cfg.size)
    power = float(np.mean(clean[:, mask] ** 2))
    if not (power > 0 and np.isfinite(power)):
        raise RuntimeError(f"simulated projections have invalid signal power {power}")
    scale = 1.0 / np.sqrt(power)
    if cfg.noise == "gaussian":
        noisy = src.images[:].asnumpy() * scale
    elif cfg.noise == "poisson":
        s = clean * scale
        kappa = 0.5 / float(np.abs(s).max())
        dose = cfg.snr / kappa**2
        lam = dose * np.clip(1.0 - kappa * s, 0.0, None)
        counts = np.random.default_rng(cfg.seed).poisson(lam)
        noisy = (dose - counts) / (dose * kappa)
    else:
        noisy = clean * scale
    clean = clean * scale
    meta: dict[str, Any] = {
        "config": asdict(cfg),
        "snr_convention": "mean(clean^2 on disc) / noise variance (ASPIRE true_snr)",
        "centre": "box centre ((L-1)/2, (L-1)/2); ASPIRE projections shifted by "
        f"{aspire_centre_offset(cfg.size)} px",
        "aspire_version": getattr(aspire, "__version__", "unknown"),
    }
    if cfg.noise == "poisson":
        meta["dose_e_per_pixel"] = dose
        meta["contrast"] = kappa
    if cfg.noise != "none":
        meta["snr_measured"] = measured_snr(clean, noisy)
    return ParticleStack(
        clean=clean.astype(np.float32),
        noisy=noisy.astype(np.float32),
        angles=np.asarray(src.angles, dtype=np.float64),
        molecule=np.asarray(src.states, dtype=np.int64) - 1,
        meta=meta,
    )
