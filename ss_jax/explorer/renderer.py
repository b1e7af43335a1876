"""Jitted programs of the explorer and the RenderService that shares them between browser tabs.

Programs (each one `jax.jit`, compiled once per batch shape on this process's default
device, no sharding, so a result depends only on the inputs, never on the device count):

  render_rows(g, flat (B, C) float32)          -> (B, H, W, img_c) float32 raw output
  seed_styles(g, z (B, z_dim), c, psi)         -> (B, C) flat S
  channel_map(g, flat (1, C), idx, res)        -> (P, P) |d pooled image / d s_idx| averaged over
                                                  colour (the gradient-map definition of
                                                  ss_jax.stylespace.gradmaps.api, one column by a jvp)

The RenderService owns the render program: requests (k rows of flat S) go into one FIFO
queue; a single worker thread takes the oldest request and every further queued request
that fits into `max_batch` rows, renders them as one padded batch of the smallest bucket
size (1, 2, 4, ..., max_batch) and hands each request its rows. So concurrent tabs share
batches in arrival order and none waits behind another's long queue (the page keeps at
most one render request in flight per tab, newest state wins).
"""

import concurrent.futures
import functools
import queue
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from ss_jax.runtime import images as images_lib
from ss_jax.stylegan2 import sampling
from ss_jax.stylespace import channels as stylespace
from ss_jax.stylegan2.generator import flatten_styles, unflatten_styles

DEFAULT_MAX_BATCH = 8
MAP_RESOLUTION = 32


@jax.jit
def _render(g, flat):
  return g.synthesis(unflatten_styles(g.layout, flat), noise_mode="const")


@jax.jit
def _seed_styles(g, z, c, psi):
  return flatten_styles(g.styles(g.mapping(z, c, psi)))


def _pool(img, res):
  """(N, H, W, C) -> (N, P, P, C) box mean, P = min(res, H) (as ss_jax.stylespace.gradmaps.api)."""
  n, h, w, c = img.shape
  if h > res:
    f = h // res
    img = img.reshape(n, res, f, res, f, c).mean(axis=(2, 4))
  return img


@functools.partial(jax.jit, static_argnums=3)
def _channel_map(g, flat, idx, res):
  tangent = jax.nn.one_hot(idx, flat.shape[1], dtype=flat.dtype)[None]
  f = lambda s: _pool(_render(g, s), res)
  _, t = jax.jvp(f, (flat,), (tangent,))
  return jnp.abs(t[0]).mean(-1)


def bucket(n, max_batch=DEFAULT_MAX_BATCH):
  """Smallest power of two >= n (capped at max_batch): the padded batch size of n rows."""
  b = 1
  while b < n and b < max_batch:
    b *= 2
  return min(b, max(int(max_batch), 1))


def render_rows(g, flat, max_batch=DEFAULT_MAX_BATCH):
  """(N, C) flat S -> (N, H, W, img_c) uint8, in padded buckets (pad rows repeat the last row)."""
  flat = np.asarray(flat, np.float32)
  out = []
  for i in range(0, len(flat), max_batch):
    x = flat[i : i + max_batch]
    k = len(x)
    b = bucket(k, max_batch)
    if b > k:
      x = np.concatenate([x, np.repeat(x[-1:], b - k, axis=0)])
    out.append(images_lib.to_uint8(np.asarray(_render(g, x)))[:k])
  return np.concatenate(out)


def seed_styles(g, seeds, psi, class_idx=None):
  """Seeds (N,) -> flat S (N, C) float32, one seed per call (z as sampling.z_from_seeds)."""
  out = []
  for seed in seeds:
    z = sampling.z_from_seeds([int(seed)], g.config.z_dim)
    c = sampling.class_labels(g.config.c_dim, [int(seed)], class_idx)
    out.append(np.asarray(_seed_styles(g, z, c if g.config.c_dim else None, np.float32(psi))))
  return np.concatenate(out) if out else np.zeros((0, stylespace.num_channels(g.layout)), np.float32)


def channel_map(g, flat_row, idx, res=MAP_RESOLUTION):
  """One image's gradient map of flat channel idx: (P, P) float32, P = min(res, image size)."""
  row = np.asarray(flat_row, np.float32).reshape(1, -1)
  return np.asarray(_channel_map(g, row, jnp.int32(idx), int(res)))


class _Request:
  __slots__ = ("rows", "future", "t0")

  def __init__(self, rows):
    self.rows = rows
    self.future = concurrent.futures.Future()
    self.t0 = time.perf_counter()


class RenderService:
  """One worker thread rendering queued requests in shared batches (see module docstring).

  render(flat (k, C)) -> (k, H, W, img_c) uint8 blocks until done; thread-safe.
  """

  def __init__(self, g, max_batch=DEFAULT_MAX_BATCH):
    self.g = g
    self.max_batch = int(max_batch)
    self._queue = queue.Queue()
    self._carry = None
    self._lock = threading.Lock()
    self.counters = {"batches": 0, "rows": 0, "requests": 0}
    self._stop = False
    self._thread = threading.Thread(target=self._loop, name="render-service", daemon=True)
    self._thread.start()

  def warm_up(self):
    """Compiles every bucket size now (instead of on the first requests)."""
    c = stylespace.num_channels(self.g.layout)
    b = 1
    while True:
      render_rows(self.g, np.zeros((b, c), np.float32), self.max_batch)
      if b >= self.max_batch:
        break
      b *= 2

  def submit(self, flat):
    """Queues the rows (split into requests of at most max_batch); -> list of futures."""
    flat = np.asarray(flat, np.float32)
    if flat.ndim != 2 or flat.shape[1] != stylespace.num_channels(self.g.layout):
      raise ValueError(f"expected flat S rows (k, {stylespace.num_channels(self.g.layout)}), got {flat.shape}")
    reqs = [_Request(flat[i : i + self.max_batch]) for i in range(0, len(flat), self.max_batch)]
    for r in reqs:
      self._queue.put(r)
    return [r.future for r in reqs]

  def render(self, flat, timeout=120):
    futures = self.submit(flat)
    return np.concatenate([f.result(timeout=timeout) for f in futures])

  def close(self):
    self._stop = True
    self._queue.put(None)
    self._thread.join(timeout=10)

  def _next_batch(self):
    first = self._carry or self._queue.get()
    self._carry = None
    if first is None:
      return []
    batch, rows = [first], len(first.rows)
    while rows < self.max_batch:
      try:
        r = self._queue.get_nowait()
      except queue.Empty:
        break
      if r is None:
        self._stop = True
        break
      if rows + len(r.rows) > self.max_batch:
        self._carry = r  # served first in the next round: arrival order is kept
        break
      batch.append(r)
      rows += len(r.rows)
    return batch

  def _loop(self):
    while not self._stop:
      batch = self._next_batch()
      if not batch:
        continue
      try:
        x = render_rows(self.g, np.concatenate([r.rows for r in batch]), self.max_batch)
      except Exception as e:  # pylint: disable=broad-except
        for r in batch:
          r.future.set_exception(e)
        continue
      with self._lock:
        self.counters["batches"] += 1
        self.counters["rows"] += sum(len(r.rows) for r in batch)
        self.counters["requests"] += len(batch)
      i = 0
      for r in batch:
        r.future.set_result(x[i : i + len(r.rows)])
        i += len(r.rows)
