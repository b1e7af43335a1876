"""Restricted unpickler: checkpoint pickles are read as data, never run as code.

`pickle` turns every GLOBAL / STACK_GLOBAL opcode into `find_class(module, name)` and
calls what it returns (REDUCE, NEWOBJ, BUILD), so an ordinary `pickle.load` of an
untrusted file can run arbitrary code. `SafeUnpickler.find_class` instead looks the
name up in `ALLOWED_GLOBALS`, an explicit table of data-only callables defined in this
package (standins.py, numpy_standins.py, records.py); nothing named by a checkpoint is
ever imported, and anything else raises `UnsafePickleError` before it has an effect.

Loading is two-step: `load_pickle` returns the raw object graph, which may contain
`StandIn` placeholders (lazy tensors waiting for storage bytes, numpy arrays waiting for
BUILD, persistent modules); `finalize` replaces them by numpy arrays, plain dicts and
records. `read_pickle` does both.
"""

import _compat_pickle
import contextlib
import functools
import io
import pickle
import pickletools
import struct
import types
import zipfile
import zlib

from converters.io import limits
from converters.io import numpy_standins as ns
from converters.io import records
from converters.io import standins as si
from converters.io.errors import CheckpointError
from converters.io.errors import UnsafePickleError


def _build_allow_list() -> dict:
  """(module, name) -> data-only stand-in, for every global a checkpoint may use."""
  table = {
    ("collections", "OrderedDict"): si.OrderedDictStandIn,
    ("dnnlib.util", "EasyDict"): si.EasyDictStandIn,
    ("argparse", "Namespace"): si.NamespaceStandIn,
    ("_codecs", "encode"): si.codecs_encode,
    ("torch._utils", "_rebuild_tensor_v2"): si.rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): si.rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): si.rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): si.rebuild_parameter,
    ("torch.storage", "UntypedStorage"): si.STORAGE_TYPE_MARKERS["UntypedStorage"],
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): records.reconstruct_persistent_obj,
    ("dnnlib.tflib.network", "Network"): records.TFNetworkStandIn,
    ("numpy", "dtype"): ns.DTypeProxy,
    ("numpy", "ndarray"): ns.NDARRAY,
    ("builtins", "set"): si.make_set,
    ("builtins", "frozenset"): si.make_frozenset,
    ("builtins", "bytearray"): si.make_bytearray,
    ("builtins", "bytes"): si.make_bytes,
  }
  # NumPy 1.x writes numpy.core, NumPy 2.x numpy._core.
  for core in ("numpy.core", "numpy._core"):
    table[(f"{core}.multiarray", "scalar")] = ns.numpy_scalar
    table[(f"{core}.multiarray", "_reconstruct")] = ns.numpy_reconstruct
    table[(f"{core}.numeric", "_frombuffer")] = ns.numpy_frombuffer
  # Storage classes: tagged `torch.cuda` in files saved from a GPU; same bytes.
  for name, marker in si.STORAGE_TYPE_MARKERS.items():
    table[("torch", name)] = marker
    if name != "UntypedStorage":
      table[("torch.cuda", name)] = marker
  for name, marker in si.TORCH_DTYPES.items():
    table[("torch", name)] = marker
  return table


def _protect(value):
  # Functions are wrapped so that BUILD cannot rewrite their attributes; classes and
  # markers are already immune (FrozenClass metaclass, StandIn.__setstate__).
  return si.DataOnlyCallable(value) if isinstance(value, types.FunctionType) else value


ALLOWED_GLOBALS = {k: _protect(v) for k, v in _build_allow_list().items()}


class SafeUnpickler(pickle.Unpickler):
  """`pickle.Unpickler` that resolves globals only through `ALLOWED_GLOBALS`.

  Args:
    file: binary file object positioned at the start of one pickle.
    path: file name used in error messages.
    persistent_load: optional callable resolving persistent ids (torch storages);
      without it a persistent id is an error.
  """

  def __init__(self, file, path, persistent_load=None):
    # latin-1 turns Python 2 str into str byte-for-byte (numpy re-encodes them).
    super().__init__(file, encoding="latin1")
    self._path = str(path)
    self._persistent_handler = persistent_load

  def find_class(self, module, name):
    # Protocol <= 2 writes Python 2 names (`__builtin__ set`); map them as pickle does.
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    key = (module, name)
    if key == ("torch.storage", "_load_from_bytes"):
      return si.DataOnlyCallable(functools.partial(_load_from_bytes, path=self._path))
    if key in ALLOWED_GLOBALS:
      return ALLOWED_GLOBALS[key]
    raise UnsafePickleError(module, name, self._path)

  def persistent_load(self, pid):
    if self._persistent_handler is None:
      raise CheckpointError(f"{self._path}: unexpected persistent id {pid!r:.80} in a plain pickle")
    return self._persistent_handler(pid)


def _load_from_bytes(data, path):
  """Stand-in for `torch.storage._load_from_bytes`: one storage as a legacy stream."""
  if not isinstance(data, bytes):
    raise CheckpointError(f"_load_from_bytes expects bytes, found {type(data).__name__}")
  obj = load_legacy_stream(io.BytesIO(data), path)
  if not isinstance(obj, si.Storage):
    raise CheckpointError(f"embedded storage blob holds a {type(obj).__name__}, not a storage")
  return obj


# Opcodes that create no object (framing, memo bookkeeping, stack marks).
_FREE_OPS = frozenset(
  [
    "PROTO",
    "FRAME",
    "PUT",
    "BINPUT",
    "LONG_BINPUT",
    "MEMOIZE",
    "GET",
    "BINGET",
    "LONG_BINGET",
    "MARK",
    "POP",
    "POP_MARK",
    "STOP",
  ]
)


def count_objects(file) -> int:
  """Opcodes of the pickle at `file`'s position that create objects; the position is kept.

  Walks the opcodes with pickletools (nothing is built), so a pickle that would create
  millions of objects is refused before it allocates them.
  """
  pos = file.tell()
  n = 0
  for op, _, _ in pickletools.genops(file):
    if op.name not in _FREE_OPS:
      n += 1
  file.seek(pos)
  return n


def load_pickle(file, path, persistent_load=None):
  """Unpickles one pickle from `file` (left just after its STOP); raw, not finalized.

  The pickle's objects are counted first against the current limits.Budget.
  """
  limits.current().charge_objects(count_objects(file))
  return SafeUnpickler(file, path, persistent_load).load()


def read_pickle(file, path, persistent_load=None):
  """`load_pickle` followed by `finalize`."""
  return finalize(load_pickle(file, path, persistent_load))


_ATOMS = (str, bytes, bytearray, int, float, complex, bool, type(None))


def finalize(obj, memo=None, depth=0):
  """Replaces stand-ins by final values and stand-in containers by plain ones.

  Dicts (OrderedDict / EasyDict stand-ins included) become plain dicts in insertion
  order; lists, tuples and sets are rebuilt; shared references stay shared (each
  object is converted once). Nesting deeper than limits.MAX_DEPTH is refused.
  """
  if memo is None:
    memo = {}
  if isinstance(obj, _ATOMS):
    return obj
  key = id(obj)
  if key in memo:
    return memo[key][1]
  if depth > limits.MAX_DEPTH:
    raise CheckpointError(f"refused: objects nested deeper than {limits.MAX_DEPTH} levels")
  recurse = functools.partial(finalize, memo=memo, depth=depth + 1)
  if isinstance(obj, si.StandIn):
    # Through the type: an instance attribute set by BUILD cannot shadow the method.
    out = type(obj).finalize(obj, recurse)
  elif isinstance(obj, dict):
    out = {}
    memo[key] = (obj, out)  # Registered before recursing, so cycles terminate.
    for k, v in obj.items():
      out[recurse(k)] = recurse(v)
  elif isinstance(obj, list):
    out = []
    memo[key] = (obj, out)
    out.extend(recurse(v) for v in obj)
  elif isinstance(obj, tuple):
    out = tuple(recurse(v) for v in obj)
  elif isinstance(obj, (set, frozenset)):
    out = type(obj)(recurse(v) for v in obj)
  else:  # numpy arrays and scalars, records, markers.
    out = obj
  # Keeping obj alive keeps its id from being reused by another object meanwhile.
  memo[key] = (obj, out)
  return out


# Exceptions that corrupt or truncated input can raise inside pickle / numpy / zipfile.
_FORMAT_ERRORS = (
  pickle.UnpicklingError,
  EOFError,
  struct.error,
  ValueError,
  TypeError,
  KeyError,
  IndexError,
  AttributeError,
  OverflowError,
  MemoryError,
  RecursionError,
  UnicodeError,
  zipfile.BadZipFile,
  zipfile.LargeZipFile,
  zlib.error,
  NotImplementedError,
)
FORMAT_ERRORS = _FORMAT_ERRORS + (CheckpointError,)  # what reading a corrupt file may raise


@contextlib.contextmanager
def reading(path, what="checkpoint"):
  """Turns any format error raised inside the block into a one-line CheckpointError."""
  path = str(path)
  try:
    with limits.budget_for(path):
      yield
  except CheckpointError as e:
    if path in str(e):
      raise
    raise CheckpointError(f"cannot read {what} {path}: {e}") from e
  except _FORMAT_ERRORS as e:
    raise CheckpointError(f"cannot read {what} {path}: corrupt or truncated data ({type(e).__name__}: {e})") from e
  except OSError as e:
    if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)):
      raise  # the file itself, not its content
    # e.g. zipfile seeking to a negative offset named by a corrupt directory
    raise CheckpointError(f"cannot read {what} {path}: corrupt data ({type(e).__name__}: {e})") from e


def read_pickle_file(path, what):
  """A whole plain-pickle file through the allow-list; empty or corrupt files -> CheckpointError.

  The file is read into memory first so lengths in the stream can never allocate
  past its size.
  """
  with reading(path, what):
    with open(path, "rb") as f:
      data = f.read()
    if not data:
      raise CheckpointError(f"{path} is empty (expected: {what})")
    return read_pickle(io.BytesIO(data), path)


# ----------------------------------------------------------------------------- legacy torch streams
# The legacy torch.save stream (see torch_files.py) lives here because the unpickler itself needs
# it: NVIDIA network pickles embed every storage as one (`torch.storage._load_from_bytes`).

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


def storage_type(value, pid):
  """The StorageType stand-in a persistent id names (a one-line error for anything else)."""
  if not isinstance(value, si.StorageType):
    raise CheckpointError(f"persistent id {pid!r:.80} names {value!r:.40}, not a storage type")
  return value


def load_legacy_stream(f, path):
  """Reads one legacy torch.save stream from file object `f`; raw (not finalized).

  Storages referenced by the object pickle are filled from the records that follow.
  """
  if load_pickle(f, path) != LEGACY_MAGIC:
    raise CheckpointError(f"{path} is not a torch.save file (expected zip archive or legacy magic number)")
  version = load_pickle(f, path)
  if version != LEGACY_PROTOCOL_VERSION:
    raise CheckpointError(f"{path}: legacy torch protocol version {version!r:.20}, expected {LEGACY_PROTOCOL_VERSION}")
  sys_info = load_pickle(f, path)
  little_endian = sys_info.get("little_endian") if isinstance(sys_info, dict) else None
  if not isinstance(little_endian, bool):
    raise CheckpointError(f"{path}: legacy sys_info {sys_info!r:.80} lacks little_endian")

  roots = {}  # root key -> Storage.

  def persistent_load(pid):
    if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
      raise CheckpointError(
        f"{path}: unsupported legacy persistent id {pid!r:.80} (only "
        "tensors and storages are read, not saved module classes)"
      )
    _, stype, key, _location, numel, view = pid  # Location ('cpu', 'cuda:0') is ignored.
    dtype = storage_type(stype, pid).dtype
    if not isinstance(key, str):
      raise CheckpointError(f"{path}: storage key {key!r:.40} is not a string")
    root = roots.setdefault(key, si.Storage(dtype, numel))
    if root.dtype != dtype or root.numel != numel:
      raise CheckpointError(f"{path}: storage {key} referenced with two types or sizes")
    if view is None:
      return root
    if not (isinstance(view, tuple) and len(view) == 3):
      raise CheckpointError(f"{path}: malformed storage view metadata {view!r:.80}")
    return root.view(view[1], view[2])

  obj = load_pickle(f, path, persistent_load)
  keys = load_pickle(f, path)
  if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
    raise CheckpointError(f"{path}: expected the list of storage keys, found {type(keys).__name__}")
  order = "little" if little_endian else "big"
  for key in keys:
    storage = roots.get(key)
    if storage is None or storage.loaded:
      raise CheckpointError(f"{path}: storage record {key!r:.40} is unreferenced or repeated")
    header = f.read(8)
    if len(header) != 8:
      raise CheckpointError(f"{path}: file ends before storage record {key} (truncated?)")
    numel = int.from_bytes(header, order, signed=True)
    if numel != storage.numel:
      raise CheckpointError(f"{path}: storage {key} has {numel} elements on disk, expected {storage.numel}")
    nbytes = numel * storage.dtype.itemsize
    storage.set_bytes(f.read(nbytes), little_endian)
  missing = [k for k, s in roots.items() if not s.loaded]
  if missing:
    raise CheckpointError(f"{path}: no data records for storages {missing[:5]}")
  return obj
