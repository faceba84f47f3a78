"""When a Triton kernel may run: Triton importable, and the tensors on a GPU — or on the CPU
under Triton's interpreter (``TRITON_INTERPRET=1`` set before ``triton`` is first imported), which
is how the tests run the kernels here."""

from __future__ import annotations

import functools
import os


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # not installed, or broken on this platform
        return False
    return True


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"
