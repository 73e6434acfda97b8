"""Particle stacks as MRC files (``.mrcs``), the field's format, via ``mrcfile``.

Stacks are written as MRC2014 image stacks (``ispg = 0``, ``nz = n``) of float32 ``(n, L, L)``
with the pixel size in the header and a provenance label (the MRC header has up to ten 80-char
labels) such as ``spiral-cnn 0.1.0 denoise model=spiral`` - as RELION, cryoSPARC and EMAN do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

PROGRAM = "spiral-cnn"


def write_stack(
    path: str | Path,
    images: NDArray[np.floating[Any]],
    label: str,
    pixel_size: float = 1.0,
    overwrite: bool = True,
) -> None:
    """Write ``(n, L, L)`` images as an MRC image stack.

    Args:
        path: output path (``.mrcs`` by convention).
        images: ``(n, L, L)`` finite real array (stored as float32).
        label: provenance text, truncated to 80 characters, prefixed with the program name.
        pixel_size: angstrom per pixel.
        overwrite: replace an existing file.
    """
    import mrcfile

    arr = np.asarray(images)
    if arr.ndim != 3:
        raise ValueError(f"image stack must have shape (n, L, L), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"refusing to write {path}: image stack contains NaN or infinity")
    with mrcfile.new(str(path), overwrite=overwrite) as mrc:
        mrc.set_data(np.ascontiguousarray(arr, dtype=np.float32))
        mrc.set_image_stack()
        mrc.voxel_size = pixel_size
        mrc.add_label(f"{PROGRAM}: {label}"[:80])


def read_stack(path: str | Path) -> tuple[NDArray[np.float32], float, list[str]]:
    """Read an MRC image stack (or a single image) as float32 ``(n, L, L)``.

    Returns:
        ``(images, pixel_size, labels)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable MRC file, not square, or contains NaN.
    """
    import mrcfile

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such particle stack: {p}")
    try:
        with mrcfile.open(str(p), permissive=False, mode="r") as mrc:
            data = np.array(mrc.data, dtype=np.float32)
            pixel_size = float(mrc.voxel_size.x)
            labels = [str(s) for s in mrc.get_labels()]
    except ValueError as exc:
        raise ValueError(f"{p} is not a readable MRC file: {exc}") from exc
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3 or data.shape[-1] != data.shape[-2]:
        raise ValueError(f"{p}: expected a stack of square images, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{p}: image stack contains NaN or infinity")
    return data, pixel_size, labels
