"""ablation-paths: optimised ablation paths for explaining image classifiers."""

from ablation_paths.mask_spaces import MaskSpace, PixelMaskSpace

__version__ = "0.1.0"

__all__ = ["MaskSpace", "PixelMaskSpace", "__version__"]
