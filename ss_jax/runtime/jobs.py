"""Resumable sharded jobs: atomic files, a settings guard, and progress reporting.

A long job (population statistics, gradient maps, sampling for DCI, ...) is split
into numbered shards. Each finished shard is one .npz written with
write-then-rename, so a killed job loses at most the shard in flight, and a rerun
with the same settings computes only the missing shards. The shard layout depends
only on the settings; shards are assigned to processes round-robin (by default
jax.process_index() of jax.process_count()), so a rerun with another number of
processes or devices completes the same job (see ss_jax.runtime.distributed).
"""
import contextlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np


def atomic_write_bytes(path, data: bytes):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def atomic_write_text(path, text: str):
  atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj):
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_save_npz(path, **arrays):
  import io
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  atomic_write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def atomic_directory(directory):
  """Yields a temporary sibling folder that replaces `directory` once the block succeeds.

  A crash inside the block leaves any previous `directory` untouched and no partial one.
  """
  directory = pathlib.Path(directory).absolute()
  directory.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=directory.name + ".tmp-", dir=directory.parent))
  os.chmod(tmp, 0o755)  # mkdtemp makes it private; a published directory should not be
  try:
    yield tmp
    if directory.exists():
      shutil.rmtree(directory)
    os.replace(tmp, directory)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def load_npz(path):
  with np.load(path, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


def _json_default(o):
  if isinstance(o, (np.integer,)):
    return int(o)
  if isinstance(o, (np.floating,)):
    return float(o)
  if isinstance(o, np.ndarray):
    return o.tolist()
  if isinstance(o, pathlib.Path):
    return str(o)
  raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class SettingsMismatch(ValueError):
  pass


class ShardsMissing(RuntimeError):
  """Shards that should exist by now do not (another process still running, or failed)."""


class ShardedJob:
  """Shards of one job under workdir/name/: spec.json + shard_00000.npz, ...

  spec: plain data describing everything that determines the results (checkpoint,
  sample counts, seeds, ...). Resuming with a different spec is refused, since
  mixing shards from two settings would silently corrupt the result. Device and
  process counts are never part of it.
  process_index, process_count: this process's share of the shards (mine());
  default: jax.process_index() / jax.process_count(), so make the job after
  ss_jax.runtime.distributed.initialize().
  """

  def __init__(self, workdir, name, spec, num_shards, process_index=None, process_count=None):
    self.dir = pathlib.Path(workdir) / name
    self.num_shards = int(num_shards)
    if process_index is None or process_count is None:
      import jax  # lazy: the rest of this module is numpy only
      process_index = jax.process_index() if process_index is None else process_index
      process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= int(process_index) < int(process_count):
      raise ValueError(f"process_index {process_index} out of range for {process_count} processes")
    self.process_index, self.process_count = int(process_index), int(process_count)
    spec = json.loads(json.dumps(dict(spec, num_shards=self.num_shards), sort_keys=True, default=_json_default))
    spec_path = self.dir / "spec.json"
    if spec_path.exists():
      old = json.loads(spec_path.read_text())
      if old != spec:
        diff = sorted(k for k in set(old) | set(spec) if old.get(k) != spec.get(k))
        raise SettingsMismatch(f"{self.dir} holds a job with different settings ({', '.join(diff)}); "
                               "use another --workdir or delete that folder")
    elif self.process_index == 0:
      atomic_write_json(spec_path, spec)
    self.spec = spec

  def shard_path(self, i):
    return self.dir / f"shard_{i:05d}.npz"

  def done(self, i):
    return self.shard_path(i).exists()

  def mine(self):
    """Shard indices this process is responsible for."""
    return [i for i in range(self.num_shards) if i % self.process_count == self.process_index]

  def pending(self):
    return [i for i in self.mine() if not self.done(i)]

  def complete(self):
    return all(self.done(i) for i in range(self.num_shards))

  def write(self, i, **arrays):
    atomic_save_npz(self.shard_path(i), **arrays)

  def read(self, i):
    return load_npz(self.shard_path(i))

  def read_all(self, keys=None):
    """Concatenate every shard's arrays along axis 0 (all shards must be done)."""
    missing = [i for i in range(self.num_shards) if not self.done(i)]
    if missing:
      raise ShardsMissing(f"{self.dir}: {len(missing)} shard(s) not done yet (first: {missing[0]})")
    parts = [self.read(i) for i in range(self.num_shards)]
    keys = keys or list(parts[0])
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in keys}


class Progress:
  """Prints 'label: done/total (rate/s, ETA)' at most every `interval` seconds."""

  def __init__(self, total, label, unit="items", interval=5.0, stream=None, done=0):
    self.total, self.label, self.unit, self.interval = total, label, unit, interval
    self.stream = stream or sys.stderr
    self.start_done = self.done = done
    self.t0 = self.last = time.time()

  def update(self, n=1, force=False):
    self.done += n
    now = time.time()
    if force or now - self.last >= self.interval or self.done >= self.total:
      self.last = now
      rate = (self.done - self.start_done) / max(now - self.t0, 1e-9)
      eta = (self.total - self.done) / rate if rate > 0 else float("inf")
      eta_s = f"{eta:.0f}s" if eta != float("inf") else "?"
      print(f"{self.label}: {self.done}/{self.total} {self.unit} ({rate:.2f}/s, ETA {eta_s})",
            file=self.stream, flush=True)


def shard_ranges(num_samples, samples_per_shard):
  """[(start, stop), ...] sample index ranges, one per shard."""
  if num_samples < 1:
    raise ValueError(f"num_samples must be >= 1, got {num_samples}")
  if samples_per_shard < 1:
    raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
  return [(a, min(a + samples_per_shard, num_samples)) for a in range(0, num_samples, samples_per_shard)]
