"""ablation-paths: optimised ablation paths for explaining image classifiers.

The public surface::

    explain(model, image, target=None, *, score="retain", baseline="blur", ...)
    AblationPath(model).attribute(inputs, baselines=None, target=..., internal_batch_size=None)
    explain_func(model, inputs, targets, **kwargs)        # Quantus-style
    load(file)                                            # read a saved result
    register_mask_space(name), mask_space_names()         # the mask-space registry
    project(path), monotonize(series, dim=0)              # the path projections
"""

from ablation_paths.api import AblationPath, explain, explain_func
from ablation_paths.diagnostics import AblationPathWarning
from ablation_paths.many import explain_many
from ablation_paths.mask_spaces import MaskSpace, mask_space_names, register_mask_space
from ablation_paths.optimizer import AblationPathConfig
from ablation_paths.paths import check_axioms, monotonize, project, saturation
from ablation_paths.pixel_space import PixelMaskSpace
from ablation_paths.result import AblationPathResult, load

__version__ = "0.1.0"

__all__ = [
    "AblationPath",
    "AblationPathConfig",
    "AblationPathResult",
    "AblationPathWarning",
    "MaskSpace",
    "mask_space_names",
    "register_mask_space",
    "PixelMaskSpace",
    "check_axioms",
    "explain",
    "explain_func",
    "explain_many",
    "load",
    "monotonize",
    "project",
    "saturation",
    "__version__",
]
