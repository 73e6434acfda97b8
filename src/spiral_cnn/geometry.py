"""Spiral sampling of the unit disc and the ribbon around it (thesis section 7.3.1-7.3.2).

All coordinates are in units of the disc radius: the particle disc is ``{|r| <= 1}``. A cartesian
image of ``L x L`` pixels covers ``[-1, 1]^2`` with pixel centres at ``(2 i - (L - 1)) / L``, so
one pixel is ``2 / L`` wide and the inscribed disc has radius ``L / 2`` pixels.

The spiral is the Archimedean spiral of thesis equations (7.5)-(7.7)::

    r(t) = sqrt(t / pi),   theta(t) = 2 * n_wind * sqrt(pi * t),   t_i = i * pi / n_spls,

for ``i = 0 .. n_spls - 1``. Neighbouring windings are ``1 / n_wind`` apart radially and
neighbouring samples ``pi * n_wind / n_spls`` apart along the curve, so ``n_spls = pi * n_wind**2``
samples the disc isotropically (:func:`isotropic_n_spls`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def isotropic_n_spls(n_wind: int) -> int:
    """Number of samples that makes the along-curve spacing equal the winding spacing.

    The along-curve spacing is ``pi * n_wind / n_spls`` and the radial spacing ``1 / n_wind``;
    equating them gives ``n_spls = pi * n_wind**2`` (rounded).
    """
    if n_wind < 1:
        raise ValueError(f"n_wind must be >= 1, got {n_wind}")
    return int(round(math.pi * n_wind**2))


@dataclass(frozen=True)
class SpiralSpec:
    """Configuration of one spiral sampling and its convolution ribbon.

    Attributes:
        n_wind: number of windings covering the unit disc (thesis eq. 7.6).
        n_spls: number of sample points (thesis eq. 7.7); ``None`` picks ``isotropic_n_spls``.
        rows: ribbon thickness in windings (odd: 3 or 5 in the thesis); also the kernel height.
        cols: kernel width along the spiral (odd).
    """

    n_wind: int
    n_spls: int | None = None
    rows: int = 3
    cols: int = 3

    def __post_init__(self) -> None:
        if self.n_wind < 1:
            raise ValueError(f"n_wind must be >= 1, got {self.n_wind}")
        if self.n_spls is not None and self.n_spls < 4:
            raise ValueError(f"n_spls must be >= 4, got {self.n_spls}")
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if v < 1 or v % 2 == 0:
                raise ValueError(f"{name} must be a positive odd number, got {v}")

    @property
    def n(self) -> int:
        """Number of spiral samples actually used."""
        return self.n_spls if self.n_spls is not None else isotropic_n_spls(self.n_wind)

    @staticmethod
    def for_image(size: int, rows: int = 3, cols: int = 3) -> SpiralSpec:
        """Spiral whose spacing equals the pixel pitch ``2 / size`` of a ``size x size`` image."""
        if size < 4:
            raise ValueError(f"image size must be >= 4, got {size}")
        return SpiralSpec(n_wind=size // 2, rows=rows, cols=cols)


def spiral_signed_radius(j: NDArray[np.int64] | NDArray[np.float64], n_spls: int) -> FloatArray:
    """Signed radius ``sign(j) * sqrt(|j| / n_spls)`` of (possibly negative) sample index ``j``.

    For ``j >= 0`` this is eq. (7.5) with ``t = j * pi / n_spls``. Negative ``j`` continue the
    curve through the origin onto the second branch of Fermat's spiral (the first branch rotated
    by pi), which is how the ribbon is extended past the centre for the kernel's half-width.
    """
    j = np.asarray(j, dtype=np.float64)
    return np.sign(j) * np.sqrt(np.abs(j) / n_spls)


def spiral_points(n_wind: int, n_spls: int) -> FloatArray:
    """Cartesian coordinates of the spiral samples, eq. (7.5)-(7.7).

    Returns:
        ``(n_spls, 2)`` array of ``(x, y)`` in units of the disc radius, ordered along the curve
        from the centre outwards.
    """
    return ribbon_points(n_wind, n_spls, rows=1, cols=1)[0]


def ribbon_points(n_wind: int, n_spls: int, rows: int, cols: int) -> FloatArray:
    """Sample positions of the spiral ribbon (thesis section 7.3.2, Figure 7.4).

    Row ``k`` (``k = -(rows // 2) .. rows // 2``) is the spiral shifted ``k`` windings outwards,
    i.e. the point at the same angle and radius ``r + k / n_wind``; negative shifted radii pass
    through the centre. Columns run along the spiral, padded by ``cols // 2`` samples at each end
    (the inner end continues on Fermat's second branch, the outer end leaves the disc) so that a
    *valid* ``(rows, cols)`` convolution of the ribbon returns exactly ``n_spls`` values.

    Returns:
        ``(rows, n_spls + 2 * (cols // 2), 2)`` array of ``(x, y)``.
    """
    if rows < 1 or cols < 1 or rows % 2 == 0 or cols % 2 == 0:
        raise ValueError(f"rows and cols must be positive and odd, got {rows}, {cols}")
    p, h = cols // 2, rows // 2
    j = np.arange(-p, n_spls + p)
    rho = spiral_signed_radius(j, n_spls)
    phi = 2.0 * math.pi * n_wind * np.abs(rho)  # eq. (7.6): theta = 2 pi n_wind r
    sgn = np.where(j >= 0, 1.0, -1.0)
    k = np.arange(-h, h + 1, dtype=np.float64)[:, None]
    radius = rho[None, :] + sgn[None, :] * k / n_wind
    return np.stack([radius * np.cos(phi)[None, :], radius * np.sin(phi)[None, :]], axis=-1)


def pad_ring(n_wind: int, radius: float | None = None) -> FloatArray:
    """Circle of points just outside the disc where the spiral representation is taken as zero.

    Args:
        n_wind: winding count; the ring sits at ``1 + 1 / n_wind`` by default with point spacing
            ``1 / n_wind``, i.e. one winding outside the disc, like a conv's zero padding.
        radius: override for the ring radius.

    Returns:
        ``(m, 2)`` array of ring points.
    """
    rad = 1.0 + 1.0 / n_wind if radius is None else radius
    m = max(8, int(math.ceil(2.0 * math.pi * rad * n_wind)))
    a = np.arange(m) * (2.0 * math.pi / m)
    return np.stack([rad * np.cos(a), rad * np.sin(a)], axis=-1)


def pixel_centres(size: int) -> FloatArray:
    """Pixel-centre coordinates of a ``size x size`` image, flattened row-major.

    Row index ``i`` maps to ``y`` and column index ``j`` to ``x``, both
    ``(2 * idx - (size - 1)) / size``.

    Returns:
        ``(size * size, 2)`` array of ``(x, y)``.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    c = (2.0 * np.arange(size) - (size - 1)) / size
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=-1)


def disc_mask(size: int, radius: float = 1.0) -> NDArray[np.bool_]:
    """Boolean ``(size, size)`` mask of pixel centres with ``|r| <= radius`` (disc units)."""
    xy = pixel_centres(size)
    return (np.hypot(xy[:, 0], xy[:, 1]) <= radius).reshape(size, size)
