"""Particle stacks as MRC files (``.mrcs``), the field's format, via ``mrcfile``.

Stacks are written as MRC2014 image stacks (``ispg = 0``, ``nz = n``) of float32 ``(n, L, L)``
with the pixel size in the header and a provenance label (the MRC header has up to ten 80-char
labels) such as ``spiral-cnn 0.1.0 denoise model=spiral`` - as RELION, cryoSPARC and EMAN do.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ablation_paths._optional import require

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
    mrcfile = require("mrcfile", extra="spiral")

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


# MRC modes: 0 int8, 1 int16, 2 float32, 3 complex int16, 4 complex float32, 6 uint16,
# 12 float16, 101 packed 4-bit.
_MODE_DTYPES = {0: np.int8, 1: np.int16, 2: np.float32, 6: np.uint16, 12: np.float16}
MAX_EXTENDED_HEADER = 1 << 20  # bytes
MAX_DATA_BYTES = 4 << 30


class MrcNote(UserWarning):
    """A particle stack was read with a conversion the user should know about."""


def check_header(path: str | Path, max_bytes: int = MAX_DATA_BYTES) -> dict[str, int]:
    """Validate an MRC header before any data is read (cheap; guards against hostile files).

    Refuses complex and packed modes, non-square images, empty stacks, extended headers above
    :data:`MAX_EXTENDED_HEADER`, data above ``max_bytes``, files shorter than the header says,
    and 3-D volumes (space group 1-230 with ``nz > 1``) unless the name ends in ``.mrcs``.

    Returns:
        ``{"mode", "nx", "ny", "nz", "ispg", "nsymbt"}``.

    Raises:
        ValueError: with the reason, naming the file.
    """
    mrcfile = require("mrcfile", extra="spiral")

    p = Path(path)
    try:
        with mrcfile.open(str(p), mode="r", header_only=True, permissive=False) as mrc:
            h = mrc.header
            info = {k: int(h[k]) for k in ("mode", "nx", "ny", "nz", "ispg", "nsymbt")}
    except (ValueError, OSError) as exc:
        raise ValueError(f"{p} is not a readable MRC file: {exc}") from exc
    mode = info["mode"]
    if mode in (3, 4):
        raise ValueError(f"{p} holds complex data (MRC mode {mode}); particle stacks are real")
    if mode not in _MODE_DTYPES:
        raise ValueError(f"{p}: unsupported MRC mode {mode}")
    nx, ny, nz = info["nx"], info["ny"], info["nz"]
    if nz == 0 or nx == 0 or ny == 0:
        raise ValueError(f"{p} contains no images (nx={nx}, ny={ny}, nz={nz})")
    if min(nx, ny, nz) < 0:
        raise ValueError(f"{p}: negative dimensions in the header ({nx}, {ny}, {nz})")
    if nx != ny:
        raise ValueError(f"{p}: expected square images, got {nx}x{ny}")
    if info["nsymbt"] < 0 or info["nsymbt"] > MAX_EXTENDED_HEADER:
        raise ValueError(
            f"{p}: extended header of {info['nsymbt']} bytes (refusing above "
            f"{MAX_EXTENDED_HEADER} bytes)"
        )
    n_bytes = nx * ny * nz * np.dtype(_MODE_DTYPES[mode]).itemsize
    if n_bytes > max_bytes:
        raise ValueError(f"{p}: header declares {n_bytes} bytes of data (limit {max_bytes})")
    if p.stat().st_size < 1024 + info["nsymbt"] + n_bytes:
        raise ValueError(f"{p} is truncated: the header declares {nz} images of {nx}x{ny}")
    if 1 <= info["ispg"] <= 230 and nz > 1 and p.suffix.lower() != ".mrcs":
        raise ValueError(
            f"{p} is a 3-D volume (space group {info['ispg']}, {nz} sections), not a particle "
            "stack (stacks have space group 0 or the .mrcs extension)"
        )
    return info


def read_stack(
    path: str | Path, max_bytes: int = MAX_DATA_BYTES
) -> tuple[NDArray[np.float32], float, list[str]]:
    """Read an MRC image stack (or a single image) as float32 ``(n, L, L)``.

    The header is validated first (:func:`check_header`). Integer and float16 data are converted
    to float32 with a :class:`MrcNote` warning; their scale is arbitrary, which is why
    ``spiral-cnn denoise`` matches a stack's statistics to the training normalisation.

    Returns:
        ``(images, pixel_size, labels)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable MRC particle stack, or contains NaN.
    """
    mrcfile = require("mrcfile", extra="spiral")

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such particle stack: {p}")
    info = check_header(p, max_bytes)
    try:
        with mrcfile.mmap(str(p), permissive=False, mode="r") as mrc:
            raw = mrc.data
            src_dtype = raw.dtype
            data = np.array(raw, dtype=np.float32)
            pixel_size = float(mrc.voxel_size.x)
            labels = [str(s) for s in mrc.get_labels()]
    except (ValueError, OSError) as exc:
        raise ValueError(f"{p} is not a readable MRC file: {exc}") from exc
    if src_dtype.kind in "iu" or src_dtype == np.float16:
        warnings.warn(
            f"{p}: {src_dtype} data (MRC mode {info['mode']}) converted to float32",
            MrcNote,
            stacklevel=2,
        )
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3 or data.shape[-1] != data.shape[-2]:
        raise ValueError(f"{p}: expected a stack of square images, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{p}: image stack contains NaN or infinity")
    return data, pixel_size, labels
