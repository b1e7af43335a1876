"""release_free_heap hands freed heap pages back to the OS (glibc Linux; elsewhere a no-op)."""

import ctypes
import sys

import pytest

from ss_jax.runtime import memory


def _rss_bytes():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(memory._libc() is None, reason="glibc only")
def test_release_free_heap_returns_freed_blocks():
  libc = ctypes.CDLL("libc.so.6")
  libc.malloc.restype = ctypes.c_void_p
  libc.free.argtypes = [ctypes.c_void_p]
  n, size = 50_000, 4000  # 200 MB of heap blocks (below the mmap threshold), touched
  blocks = [libc.malloc(size) for _ in range(n)]
  for b in blocks:
    ctypes.memset(b, 1, size)
  pin = libc.malloc(size)  # keeps the freed blocks below the heap's top: free() alone cannot trim them
  for b in blocks:
    libc.free(b)
  before = _rss_bytes()
  assert memory.release_free_heap()
  released = before - _rss_bytes()
  libc.free(pin)
  assert released > 100e6, released


def test_release_free_heap_elsewhere_is_a_no_op(monkeypatch):
  monkeypatch.setattr(sys, "platform", "darwin")
  memory._libc.cache_clear()
  try:
    assert memory.release_free_heap() is False
  finally:
    memory._libc.cache_clear()
