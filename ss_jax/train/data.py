"""Real-image stream for training: ToyFaces batches rendered ahead of the GPU.

Batch t holds seeds offset + t * batch + [0, batch): a pure function of the
step, so a resumed run sees exactly the data of an uninterrupted one. Batches
are rendered by a pool of workers a few steps ahead; rendering is numpy-heavy
Python that threads barely parallelise (the GIL), so on many-core hosts use
processes.
"""

import collections
import concurrent.futures
import functools
import multiprocessing
import signal

import numpy as np


def step_seeds(step: int, batch_size: int, offset: int) -> np.ndarray:
  """int64 [batch_size] ToyFaces seeds of training step `step`."""
  return offset + np.int64(step) * batch_size + np.arange(batch_size, dtype=np.int64)


def toyfaces_images(seeds, resolution: int) -> np.ndarray:
  """uint8 [N, R, R, 3] ToyFaces renders (module level, so process pools can pickle it)."""
  from ss_jax.toyfaces import render  # pylint: disable=g-import-not-at-top

  return render.render(np.asarray(seeds), resolution)[0]


def toyfaces_source(resolution: int):
  """data_fn(seeds int64 [N]) -> uint8 [N, R, R, 3] for the real ToyFaces renderer."""
  return functools.partial(toyfaces_images, resolution=resolution)


def _ignore_signals():
  # Workers leave SIGINT/SIGTERM to the trainer, which checkpoints before exiting.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _render_step(data_fn, step, batch_size, offset):
  images = np.asarray(data_fn(step_seeds(step, batch_size, offset)))
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != batch_size:
    raise ValueError(f"data_fn must return uint8 [N, H, W, C], got {images.dtype} {images.shape}")
  return images


class Prefetcher:
  """Renders batches for steps start, start+1, ... in the background, in order.

    with Prefetcher(data_fn, start_step, batch_size, offset) as data:
      images = data.next()   # uint8 [batch, H, W, C] of the next step

  Args:
    data_fn: seeds int64 [N] -> uint8 [N, H, W, C]; picklable when processes=True.
    workers: concurrent batches being rendered.
    depth: batches kept in flight (default 2 * workers).
    processes: use spawned processes instead of threads.
  """

  def __init__(self, data_fn, start_step, batch_size, offset, workers=1, depth=None, processes=False):
    self._args = (data_fn, batch_size, offset)
    self._next_step = int(start_step)
    self._depth = depth or max(2, 2 * workers)
    if processes:
      self._pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_signals
      )
    else:
      self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="render")
    self._queue = collections.deque()
    self._fill()

  def _fill(self):
    data_fn, batch_size, offset = self._args
    while len(self._queue) < self._depth:
      self._queue.append(self._pool.submit(_render_step, data_fn, self._next_step, batch_size, offset))
      self._next_step += 1

  def next(self) -> np.ndarray:
    images = self._queue.popleft().result()
    self._fill()
    return images

  def close(self):
    for f in self._queue:
      f.cancel()
    self._queue.clear()
    self._pool.shutdown(wait=True, cancel_futures=True)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
