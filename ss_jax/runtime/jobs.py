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

from ss_jax.runtime import lock as workdir_lock
from ss_jax.runtime import outputs


def atomic_write_bytes(path, data: bytes):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
      os.fchmod(f.fileno(), outputs.file_mode())  # mkstemp's 0600 -> what the umask allows
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    if isinstance(e, OSError) and e.filename is None and e.errno:  # e.g. ENOSPC from fsync
      raise OSError(e.errno, e.strerror, str(path)) from e
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
def atomic_directory(directory, overwrite=False):
  """Yields a temporary sibling folder that replaces `directory` once the block succeeds.

  A crash inside the block leaves any previous `directory` untouched and no partial one.
  `directory` must be missing, empty, or (with overwrite=True) a previous ss-jax output
  (it holds the marker of ss_jax.outputs); a folder with the user's files, a file or a
  symbolic link at the path raises outputs.OutputError before anything is written.
  """
  directory = pathlib.Path(directory).absolute()
  outputs.check_target(directory, overwrite)
  directory.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=directory.name + ".tmp-", dir=directory.parent))
  os.chmod(tmp, outputs.dir_mode())  # mkdtemp makes it private; a published directory should not be
  try:
    outputs.write_marker(tmp, "output")
    yield tmp
    outputs.check_target(directory, overwrite)  # again: the folder may have changed meanwhile
    old = None
    if directory.exists():
      old = pathlib.Path(tempfile.mkdtemp(prefix=directory.name + ".old-", dir=directory.parent))
      os.replace(directory, old / "previous")
    os.replace(tmp, directory)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


class NonFiniteError(ValueError):
  """A result holds NaN or infinite values (a job stops rather than writing them)."""


def check_finite(arrays, what):
  """Raises NonFiniteError naming the first float array of `arrays` with NaN / inf."""
  for k, v in arrays.items():
    v = np.asarray(v)
    if v.dtype.kind in "fc" and not np.all(np.isfinite(v)):
      bad = int(np.size(v) - np.count_nonzero(np.isfinite(v)))
      raise NonFiniteError(
        f"{what}: '{k}' holds {bad} NaN or infinite value(s); stopping "
        "(check the checkpoint and the flags, e.g. --psi or a learning rate)"
      )


def open_npz(path):
  """np.load of an .npz/.npy with arrays only; pickled contents -> one clean ValueError."""
  try:
    return np.load(path, allow_pickle=False)
  except ValueError as e:
    if "pickle" in str(e):
      raise ValueError(f"{path} holds pickled Python objects, which ss-jax never loads (only plain arrays)") from None
    raise


def open_workdir(workdir, process_index=0):
  """Creates/claims a resumable job's workdir and takes its one-writer lock (process 0).

  Raises outputs.OutputError for a folder of the user's files and
  workdir_lock.WorkdirBusy while another live run holds it.
  """
  workdir = pathlib.Path(workdir)
  if process_index == 0:
    outputs.claim(workdir)
    workdir_lock.acquire(workdir)
  return workdir


def load_npz(path):
  """{name: array} of an .npz holding plain arrays (pickled objects refused, one line)."""
  with open_npz(path) as f:
    try:
      return {k: f[k] for k in f.files}
    except ValueError as e:
      if "allow_pickle" in str(e):
        raise ValueError(f"{path} holds pickled Python objects, which ss-jax never loads (only plain arrays)") from None
      raise


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


def same_settings(a, b) -> bool:
  """Equality of JSON-like settings by their canonical JSON text (so NaN equals NaN)."""
  canon = lambda x: json.dumps(x, sort_keys=True, default=_json_default)
  return canon(a) == canon(b)


def _moved_checkpoint_only(old, new) -> bool:
  """Whether two specs differ only in "checkpoint" paths recorded beside a "model" fingerprint (config and
  every parameter byte), at any depth (a job's spec may embed the spec of the job it reads): the same model
  at another path, e.g. a moved or copied checkpoint."""

  def strip(x):
    if isinstance(x, dict):
      return {k: strip(v) for k, v in x.items() if not (k == "checkpoint" and "model" in x)}
    if isinstance(x, list):
      return [strip(v) for v in x]
    return x

  return same_settings(strip(old), strip(new))


class ShardsMissing(RuntimeError):
  """Shards that should exist by now do not (another process still running, or failed)."""


class ShardedJob:
  """Shards of one job under workdir/name/: spec.json + shard_00000.npz, ...

  Process 0 of a run takes the workdir's lock (ss_jax.runtime.lock) when it records
  the settings or writes a shard, and holds it until it exits; a job opened only to
  read takes no lock.

  spec: plain data describing everything that determines the results (checkpoint,
  sample counts, seeds, ...). Resuming with a different spec is refused, since
  mixing shards from two settings would silently corrupt the result; only new
  "checkpoint" paths beside the same "model" fingerprints are accepted (a moved
  checkpoint), and recorded. Device and process counts are never part of it.
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
    self.workdir = pathlib.Path(workdir)
    if self.process_index == 0:
      outputs.claim(self.workdir)  # never a folder of the user's files
    spec_path = self.dir / "spec.json"
    if not spec_path.exists() and self.process_index == 0:
      self._lock()  # the settings are recorded under the lock: two new runs cannot both pass
    if spec_path.exists():
      old = json.loads(spec_path.read_text())
      if not _moved_checkpoint_only(old, spec):  # (equal specs pass too)
        diff = sorted(k for k in set(old) | set(spec) if not same_settings(old.get(k), spec.get(k)))
        raise SettingsMismatch(
          f"{self.dir} holds a job with different settings ({', '.join(diff)}); "
          "use another --workdir or delete that folder"
        )
      if not same_settings(old, spec) and self.process_index == 0:  # same results: record where it is now
        self._lock()
        atomic_write_json(spec_path, spec)
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

  def _lock(self):
    """One writer per workdir: process 0 of a run takes the lock (readers never do)."""
    if self.process_index == 0:
      workdir_lock.acquire(self.workdir)

  def write(self, i, **arrays):
    """Writes shard i (under the workdir lock); NaN / inf float arrays raise NonFiniteError."""
    check_finite(arrays, f"{self.dir.name} shard {i}")
    self._lock()
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
  """Prints 'label: done/total unit (rate/s, ETA)' at most every `interval` seconds.

  The first update usually includes compilation, so the rate and ETA are measured from
  it on; until then the line shows the elapsed time instead. `note` (e.g. a loss) is
  appended to the line.
  """

  def __init__(self, total, label, unit="items", interval=5.0, stream=None, done=0):
    self.total, self.label, self.unit, self.interval = total, label, unit, interval
    self.stream = stream or sys.stderr
    self.start_done = self.done = done
    self.t0 = self.last = time.time()
    self.warm = None  # (time, done) at the first update: the end of compilation

  def update(self, n=1, force=False, note=""):
    self.done += n
    now = time.time()
    first = self.warm is None
    if first:
      self.warm = (now, self.done)
    if force or first or now - self.last >= self.interval or self.done >= self.total:
      self.last = now
      t, d = self.warm
      if self.done > d and now > t:
        rate = (self.done - d) / (now - t)
        eta = (self.total - self.done) / rate
        stats = f"{rate:.3g}/s, ETA {eta:.0f}s"
      else:
        stats = f"{now - self.t0:.0f}s incl. compilation"
      note = f", {note}" if note else ""
      print(f"{self.label}: {self.done}/{self.total} {self.unit} ({stats}){note}", file=self.stream, flush=True)


def shard_ranges(num_samples, samples_per_shard):
  """[(start, stop), ...] sample index ranges, one per shard."""
  if num_samples < 1:
    raise ValueError(f"num_samples must be >= 1, got {num_samples}")
  if samples_per_shard < 1:
    raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
  return [(a, min(a + samples_per_shard, num_samples)) for a in range(0, num_samples, samples_per_shard)]
