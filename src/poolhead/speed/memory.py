"""Keep freed memory in the process instead of handing it back to the OS after every step (glibc `mallopt`).
glibc serves blocks over its mmap threshold with fresh, kernel-zeroed pages, and a step frees and reallocates the
word-embedding gradient and autocast's weight copies; PyTorch's tuning guide preloads jemalloc (not pip-installable)."""

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
