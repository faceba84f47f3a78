"""switchboard.kernels: Triton kernels, each beside a plain-torch reference and behind a guard
that falls back to the reference when Triton or a GPU is absent (on the CPU the kernels run
under Triton's interpreter, ``TRITON_INTERPRET=1``, which is how the tests check them).

- :func:`linear_cross_entropy` — fused linear + cross-entropy for router training.
"""

from .linear_ce import (
    LinearCrossEntropy,
    linear_cross_entropy,
    linear_cross_entropy_reference,
)
from .linear_ce import supported as linear_cross_entropy_supported

__all__ = [
    "LinearCrossEntropy",
    "linear_cross_entropy",
    "linear_cross_entropy_reference",
    "linear_cross_entropy_supported",
]
