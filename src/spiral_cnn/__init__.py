"""Spiral CNN: nearly rotation-equivariant denoising of cryo-EM particle images (thesis ch. 7)."""

from spiral_cnn.geometry import SpiralSpec, disc_mask, ribbon_points, spiral_points
from spiral_cnn.layers import ImageToSpiral, SpiralConv, SpiralToImage, spiral_conv
from spiral_cnn.resample import Resampling, apply_resampling, barycentric_resampling

__all__ = [
    "ImageToSpiral",
    "Resampling",
    "SpiralConv",
    "SpiralSpec",
    "SpiralToImage",
    "apply_resampling",
    "barycentric_resampling",
    "disc_mask",
    "ribbon_points",
    "spiral_conv",
    "spiral_points",
]
