"""switchboard.kernels: Triton kernels, each beside a plain-torch reference and behind a guard
that falls back to the reference when Triton or a GPU is absent (on the CPU the kernels run
under Triton's interpreter, ``TRITON_INTERPRET=1``, which is how the tests check them).

- :func:`linear_cross_entropy` — fused linear + cross-entropy for router training.
- :func:`postprocess_masks` — SAM's mask upsampling, threshold, areas and boxes in one pass
  (segment and track).
"""

from .linear_ce import (
    LinearCrossEntropy,
    linear_cross_entropy,
    linear_cross_entropy_reference,
)
from .linear_ce import supported as linear_cross_entropy_supported
from .mask_post import (
    MaskPostprocess,
    PostprocessedMasks,
    postprocess_masks,
    postprocess_masks_reference,
)

__all__ = [
    "LinearCrossEntropy",
    "linear_cross_entropy",
    "linear_cross_entropy_reference",
    "linear_cross_entropy_supported",
    "MaskPostprocess",
    "PostprocessedMasks",
    "postprocess_masks",
    "postprocess_masks_reference",
]
