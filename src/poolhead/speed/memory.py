"""Keep freed memory in the process instead of handing it back to the OS after every step.

Why by hand: torch's CPU allocator is glibc malloc, which serves blocks over its mmap threshold (at most 32 MiB) with
fresh pages and unmaps them on free. A training step frees and reallocates the dense word-embedding gradient
(30,522 x 384 floats for MiniLM) and, under autocast, each weight's bf16 copy: thousands of page faults a step,
each zeroed by the kernel (benchmarks/README.md measures them). PyTorch's CPU tuning guide answers this with
jemalloc/tcmalloc via LD_PRELOAD, which needs a library outside pip; glibc's own `mallopt` does it in-process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap; up to 1 GiB freed at its top stays mapped


def keep_freed_memory(enabled: bool = True) -> bool:
    """With glibc, serve blocks up to KEEP_BYTES from the heap and keep freed memory for reuse (True when set).
    Elsewhere (macOS, musl) or with enabled=False nothing changes and the answer is False. Process-wide; call it
    before the model is built."""
    if not enabled:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it; musl has a mallopt that ignores these keys
    except (OSError, AttributeError, TypeError):
        log.debug("keep_freed_memory: no glibc (%s); the allocator is left as it is", name)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
