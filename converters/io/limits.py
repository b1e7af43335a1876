"""Resource caps for reading untrusted checkpoint files.

A small hostile file must not make a reader work for minutes or allocate gigabytes.
While a file is read (`safe_pickle.reading`), a `Budget` tied to that file's size
bounds:
  * pickle objects: opcodes that create objects, counted before unpickling
    (`MAX_OBJECTS` per file, all embedded pickles together);
  * nesting of containers when the object graph is converted (`MAX_DEPTH`);
  * tensor bytes materialised from storages (views, expanded strides): at most
    `TENSOR_FACTOR` times the file size plus `TENSOR_SLACK`;
  * zip members: the decompressed size a member declares must be at most
    `MAX_ZIP_RATIO` times its compressed size (beyond `ZIP_RATIO_FREE` bytes), the
    object pickle at most `MAX_PICKLE_BYTES`, and a storage member exactly what its
    declared tensor needs is read.
Shared references (the pickle memo) are converted once and stay shared, so an object
referenced twice at each of 40 levels costs 40 conversions, not 2**40.
Exceeding a cap raises `CheckpointError` naming the file and what was refused.
"""

import contextlib
import contextvars
import os

from converters.io.errors import CheckpointError

MAX_OBJECTS = 2_000_000
MAX_DEPTH = 100
TENSOR_FACTOR = 4
TENSOR_SLACK = 64 << 20
MAX_ZIP_RATIO = 100
ZIP_RATIO_FREE = 1 << 20
MAX_PICKLE_BYTES = 256 << 20
MAX_ZIP_MEMBERS = 100_000


class Budget:
  """What one file may still cost; see the module docstring."""

  def __init__(self, path, file_size):
    self.path = str(path)
    self.objects = MAX_OBJECTS
    self.tensor_bytes = TENSOR_FACTOR * int(file_size) + TENSOR_SLACK

  def charge_objects(self, n):
    self.objects -= n
    if self.objects < 0:
      raise CheckpointError(
        f"{self.path}: refused: the pickle creates more than {MAX_OBJECTS:,} objects (a real checkpoint has far fewer)"
      )

  def charge_tensor_bytes(self, n, what="tensors"):
    self.tensor_bytes -= int(n)
    if self.tensor_bytes < 0:
      raise CheckpointError(
        f"{self.path}: refused: {what} would take more memory than "
        f"{TENSOR_FACTOR}x the file size (views or strides expanding data)"
      )


_current = contextvars.ContextVar("converters_io_budget", default=None)


@contextlib.contextmanager
def budget_for(path):
  """Makes a Budget for `path` current inside the block (the outermost one wins)."""
  if _current.get() is not None:
    yield _current.get()
    return
  try:
    size = os.path.getsize(path)
  except OSError:
    size = 0
  token = _current.set(Budget(path, size))
  try:
    yield _current.get()
  finally:
    _current.reset(token)


def current() -> Budget:
  """The current Budget; outside `budget_for` an unbounded-file default (in-memory reads)."""
  b = _current.get()
  return b if b is not None else Budget("<memory>", 0)


def check_zip_member(path, info, limit=None):
  """Refuses a zip member whose declared sizes are implausible (a decompression bomb)."""
  size, packed = info.file_size, info.compress_size
  if size > ZIP_RATIO_FREE and size > MAX_ZIP_RATIO * max(packed, 1):
    raise CheckpointError(
      f"{path}: refused zip member {info.filename}: it would inflate "
      f"{packed:,} bytes to {size:,} (more than {MAX_ZIP_RATIO}x)"
    )
  if limit is not None and size > limit:
    raise CheckpointError(
      f"{path}: refused zip member {info.filename}: {size:,} bytes, more than the {limit:,} it may hold"
    )
