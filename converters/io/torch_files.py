"""torch-free reader for `torch.save` files (zip archives and the legacy format).

Two layouts exist:
  * zip (torch >= 1.6): members under one folder; `<dir>/data.pkl` is the pickled object
    whose tensors reference storages by persistent id ('storage', storage_type, key,
    location, numel), stored as raw little-endian bytes in `<dir>/data/<key>`.
  * legacy (`_use_new_zipfile_serialization=False`, e.g. the 2019 face-parser
    checkpoint): pickles of the magic number, protocol version 1001 and a sys_info
    dict, then the object (persistent ids carry a sixth field, view_metadata), then the
    list of storage keys, then per key an int64 element count and the raw bytes.
The same legacy stream embeds each storage of an NVIDIA network pickle
(`torch.storage._load_from_bytes`), so its reader, `load_legacy_stream`, is in safe_pickle.py.
"""

import io
import pickletools
import zipfile

from converters.io import limits
from converters.io import standins as si
from converters.io.errors import CheckpointError
from converters.io.safe_pickle import LEGACY_MAGIC
from converters.io.safe_pickle import finalize
from converters.io.safe_pickle import load_legacy_stream
from converters.io.safe_pickle import load_pickle
from converters.io.safe_pickle import reading
from converters.io.safe_pickle import storage_type

ZIP_MAGIC = b"PK\x03\x04"


def has_legacy_magic(head: bytes) -> bool:
  """Whether `head` (the first bytes of a file) starts with the pickled legacy magic.

  Walks the opcodes of the first pickle only (any protocol), without unpickling.
  """
  values = []
  try:
    for op, arg, _ in pickletools.genops(io.BytesIO(head)):
      if op.name == "STOP":
        break
      if op.name not in ("PROTO", "FRAME", "MEMOIZE"):
        values.append((op.name, arg))
  except (ValueError, EOFError):
    return False
  return values in ([("LONG1", LEGACY_MAGIC)], [("LONG4", LEGACY_MAGIC)])


def read_member(zf, name, path, size=None):
  """Bytes of zip member `name`, read once, within the caps of converters.io.limits.

  size: bytes to read (a storage's declared size); None reads the whole member, an
  object pickle of at most limits.MAX_PICKLE_BYTES. The declared sizes are checked
  first (a decompression bomb is refused before anything is inflated); zipfile never
  inflates past the declared size, and a member whose data disagrees with it fails
  its CRC check.
  """
  info = zf.getinfo(name)
  limits.check_zip_member(path, info, limits.MAX_PICKLE_BYTES if size is None else None)
  if size is not None and info.file_size < size:
    raise CheckpointError(f"{path}: member {name} holds {info.file_size} bytes, expected {size}")
  with zf.open(info) as m:
    return m.read(info.file_size if size is None else size)


def _read_zip(path):
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    if len(names) > limits.MAX_ZIP_MEMBERS:
      raise CheckpointError(f"{path}: refused: zip archive with {len(names):,} members")
    tops = sorted({n.split("/", 1)[0] for n in names})
    if len(tops) != 1:
      raise CheckpointError(f"{path}: expected every zip member under one folder, found {tops[:5]}")
    top = tops[0]
    if f"{top}/data.pkl" not in names:
      raise CheckpointError(
        f"{path}: zip archive has no {top}/data.pkl (not a torch.save file; TorchScript archives are not supported)"
      )
    little_endian = True  # Files without a byteorder record are little-endian.
    if f"{top}/byteorder" in names:
      byteorder = read_member(zf, f"{top}/byteorder", path).decode("ascii", "replace").strip()
      if byteorder not in ("little", "big"):
        raise CheckpointError(f"{path}: byteorder record says {byteorder!r:.20}")
      little_endian = byteorder == "little"
    storages = {}  # key -> Storage; tensors sharing a storage share it here too.

    def persistent_load(pid):
      if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
        raise CheckpointError(f"{path}: unsupported persistent id {pid!r:.80}")
      _, stype, key, _location, numel = pid
      dtype = storage_type(stype, pid).dtype
      if not isinstance(key, str):
        raise CheckpointError(f"{path}: storage key {key!r:.40} is not a string")
      if key in storages:
        if storages[key].dtype != dtype or storages[key].numel != numel:
          raise CheckpointError(f"{path}: storage {key} referenced with two types or sizes")
        return storages[key]
      storage = si.Storage(dtype, numel)
      member = f"{top}/data/{key}"
      if member not in names:
        raise CheckpointError(f"{path}: missing storage member {member}")
      storage.set_bytes(read_member(zf, member, path, numel * dtype.itemsize), little_endian)
      storages[key] = storage
      return storage

    data = read_member(zf, f"{top}/data.pkl", path)
    return finalize(load_pickle(io.BytesIO(data), path, persistent_load))


def read_torch_file(path) -> object:
  """Reads a `torch.save` file without torch.

  Args:
    path: a .pt / .pth file, zip or legacy format; storages may be tagged CUDA.

  Returns:
    The saved object with tensors as C-contiguous numpy arrays (dtype as stored, e.g.
    float32, int64 for `num_batches_tracked`; 0-d tensors as 0-d arrays) and
    OrderedDict state dicts as plain dicts in the same order.

  Raises:
    CheckpointError: not a torch.save file, or corrupt / truncated.
    UnsafePickleError: the pickle references a global outside the allow-list.
  """
  with reading(path, "torch file"):
    with open(path, "rb") as f:
      head = f.read(64)
      if head.startswith(ZIP_MAGIC):
        return _read_zip(path)
      if not has_legacy_magic(head):
        raise CheckpointError(f"{path} is not a torch.save file (expected zip archive or legacy magic number)")
      f.seek(0)
      # In memory: reads of attacker-given lengths then never allocate past the file.
      return finalize(load_legacy_stream(io.BytesIO(f.read()), path))
