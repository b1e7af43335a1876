"""Handing the C heap's free pages back to the operating system (glibc `malloc_trim`).

XLA's compiler frees most of what it allocates (about 0.5 GB for a 1024px gradient-map
program), but glibc keeps freed small blocks in its heap, and the large buffers that the
compiled program then allocates are mmapped apart from it: the process's resident memory
holds both. `release_free_heap()` between compiling and running returns those pages.
"""

import ctypes
import functools
import sys


@functools.lru_cache(maxsize=None)
def _libc():
  if not sys.platform.startswith("linux"):
    return None
  try:
    lib = ctypes.CDLL("libc.so.6")
    return lib if hasattr(lib, "malloc_trim") else None
  except OSError:  # not glibc (e.g. musl): nothing to do
    return None


def release_free_heap():
  """Returns free heap pages to the OS where the C library is glibc; True if it released any."""
  lib = _libc()
  return bool(lib.malloc_trim(0)) if lib is not None else False
