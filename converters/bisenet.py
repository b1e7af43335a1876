"""BiSeNet face-parser state dicts (`79999_iter.pth`): detection and torch-free reading.

The official checkpoint of zllrunning/face-parsing.PyTorch is a bare
`BiSeNet.state_dict()` (legacy torch serialization, CUDA-tagged storages), read
with `converters.io.read_torch_file`; a stray `module.` prefix (DataParallel) is
stripped. The parser builds its parameters from the state dict (BatchNorm folded:
ss_jax/parser/checkpoint.py), which also reads and writes converted directories.
"""

import io
import pathlib
import pickletools
import re
import zipfile

from converters.io import read_torch_file
from converters.io.safe_pickle import FORMAT_ERRORS
from converters.io.torch_files import ZIP_MAGIC, has_legacy_magic, read_member

PREFIX = "module."
# A state-dict key of one of BiSeNet's top-level modules.
_KEY = re.compile(r"^(module\.)?(cp|ffm|conv_out|conv_out16|conv_out32)\.[\w.]+$")
_STRING_OPS = frozenset(["SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"])


# ----------------------------------------------------------------------------- detection


def _pickle_strings(path):
  """Yields the strings of a torch file's object pickle (zip or legacy), read lazily."""
  with open(path, "rb") as f:
    head = f.read(64)
    if head.startswith(ZIP_MAGIC):
      with zipfile.ZipFile(path) as zf:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl")]
        if not pkl:
          return
        stream = io.BytesIO(read_member(zf, pkl[0], path))
    elif has_legacy_magic(head):
      f.seek(0)
      for _ in range(3):  # magic number, protocol version, sys info; the object is next
        for _ in pickletools.genops(f):
          pass
      stream = f
    else:
      return
    for op, arg, _ in pickletools.genops(stream):
      if op.name in _STRING_OPS:
        yield arg


def looks_like_bisenet(path) -> bool:
  """Whether a torch file's object pickle names BiSeNet state-dict keys (cp.*, ffm.*, conv_out*.*).

  Scans the pickle's strings with `pickletools` (nothing is unpickled and no
  storage is read), so the check is cheap for any torch file. Partial state
  dicts count too: the converter then names the first missing tensor.
  """
  try:
    return any(_KEY.match(s) for s in _pickle_strings(path))
  except (OSError, *FORMAT_ERRORS):
    return False


# ----------------------------------------------------------------------------- state dict -> params


def strip_prefix(sd):
  """The state dict without a DataParallel `module.` prefix on every key."""
  if sd and all(k.startswith(PREFIX) for k in sd):
    return {k[len(PREFIX) :]: v for k, v in sd.items()}
  return sd


# ----------------------------------------------------------------------------- converted directories


def read_state_dict(path):
  """A BiSeNet `.pth` (legacy or zip torch file) -> its state dict (name -> numpy array).

  The parameter mapping and BatchNorm folding are the parser's (ss_jax.parser.checkpoint).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"face parser not found: {path}")
  return read_torch_file(path)
