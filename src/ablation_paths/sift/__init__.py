"""SIFT feature decomposition, exactly reconstructible, and SIFT-based saliency (thesis ch. 4).

Main entry points:

* :func:`decompose` -> :class:`SiftDecomposition` (keypoints, ``decode``, mass weights, heatmaps);
* :class:`SiftMaskSpace` - the features as a mask space for ablation paths;
* :func:`sift_rise` / :func:`sift_rise_heatmap` - RISE over SIFT features.
"""

from ablation_paths.sift.decomposition import (
    SiftDecomposition,
    SiftParams,
    decompose,
    find_keypoints,
)
from ablation_paths.sift.heatmaps import local_contrast
from ablation_paths.sift.keypoints import Keypoints, detect_keypoints
from ablation_paths.sift.mask_space import SiftMaskSpace
from ablation_paths.sift.rise import sift_rise, sift_rise_heatmap
from ablation_paths.sift.scale_space import ScaleSpace, reconstruct, scale_space

__all__ = [
    "Keypoints",
    "ScaleSpace",
    "SiftDecomposition",
    "SiftMaskSpace",
    "SiftParams",
    "decompose",
    "detect_keypoints",
    "find_keypoints",
    "local_contrast",
    "reconstruct",
    "scale_space",
    "sift_rise",
    "sift_rise_heatmap",
]
