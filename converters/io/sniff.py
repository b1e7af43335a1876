"""Checkpoint format detection from magic bytes and pickle globals, without unpickling."""

import pickletools

from converters.io.errors import CheckpointError, UnsafePickleError
from converters.io.safe_pickle import load_pickle, reading
from converters.io.torch_files import ZIP_MAGIC
from converters.io.torch_files import has_legacy_magic

FORMATS = ("nvidia_pkl", "tf_pkl", "torch_zip", "torch_legacy")
_SUPPORTED = (
  "supported: 'nvidia_pkl' (stylegan2-ada-pytorch / stylegan3 .pkl), 'tf_pkl' "
  "(StyleGAN2 TensorFlow .pkl), 'torch_zip' (torch.save zip archive), "
  "'torch_legacy' (legacy torch.save file)"
)
# Global modules that identify a pickle's format.
_MODULE_FORMATS = (("torch_utils.persistence", "nvidia_pkl"), ("dnnlib.tflib.network", "tf_pkl"))
_STRING_OPS = frozenset(
  ["SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"]
)
_NEUTRAL_OPS = frozenset(["PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"])


def _pickle_global_modules(f):
  """Yields the module of each GLOBAL / STACK_GLOBAL of the pickle in `f`.

  STACK_GLOBAL takes its module and name from the stack, pushed by string opcodes or
  fetched from the memo; only those pushes are tracked, not the whole stack.
  """
  memo = {}
  pushed = [None, None]  # Last two values pushed (strings, else None).
  for op, arg, _ in pickletools.genops(f):
    name = op.name
    if name == "GLOBAL":
      yield arg.split(" ", 1)[0]
    elif name == "STACK_GLOBAL":
      yield pushed[-2] if isinstance(pushed[-2], str) else ""
      pushed.append(None)
    elif name == "MEMOIZE":
      memo[len(memo)] = pushed[-1]
    elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
      memo[arg] = pushed[-1]
    elif name in ("GET", "BINGET", "LONG_BINGET"):
      pushed.append(memo.get(arg))
    elif name in _STRING_OPS:
      pushed.append(arg)
    elif name not in _NEUTRAL_OPS:
      pushed.append(None)
    del pushed[:-2]


def sniff_format(path) -> str:
  """Returns 'nvidia_pkl', 'tf_pkl', 'torch_zip' or 'torch_legacy' for a checkpoint.

  Zip and legacy torch files are told by their magic bytes; plain pickles by the
  globals they reference, scanned with `pickletools.genops`. A file that matches no
  format is finally read through the allow-list unpickler, which resolves nothing
  outside it, so a payload is named in an UnsafePickleError.

  Raises:
    UnsafePickleError: an unrecognized pickle names a global outside the allow-list.
    CheckpointError: none of the supported formats (message lists them).
  """
  with reading(path, "checkpoint"):
    with open(path, "rb") as f:
      head = f.read(64)
      if head.startswith(ZIP_MAGIC):
        return "torch_zip"
      if has_legacy_magic(head):
        return "torch_legacy"
      if head[:1] == b"\x80":  # PROTO: a binary pickle, protocol >= 2.
        f.seek(0)
        try:
          for module in _pickle_global_modules(f):
            for prefix, fmt in _MODULE_FORMATS:
              if module == prefix or module.startswith(prefix + "."):
                return fmt
        except ValueError as e:
          raise CheckpointError(
            f"{path}: unrecognized checkpoint format, pickle stream is corrupt ({e}); {_SUPPORTED}"
          ) from e
      # An unknown file still goes through the allow-list reader, so a pickle that names
      # a refused global (a payload) is reported as such rather than as "unrecognized".
      f.seek(0)
      try:
        load_pickle(f, path)
      except UnsafePickleError:
        raise
      except CheckpointError:
        pass
    raise CheckpointError(f"{path}: unrecognized checkpoint format; {_SUPPORTED}")
