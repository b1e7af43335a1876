"""Reader for NVIDIA stylegan2-ada-pytorch / stylegan3 network pickles, without torch.

Training snapshots are plain pickles of `{'training_set_kwargs', 'G', 'D', 'G_ema',
'augment_pipe', ...}` whose networks are `torch_utils.persistence` objects: each module
is `_reconstruct_persistent_obj(meta)` with its class source in `meta['module_src']`
and its `__dict__` in `meta['state']`. Here every module becomes a `TorchModule` record
built from that state alone; the source is ignored and nothing is imported or run.
Tensor storages are embedded legacy torch streams (`torch.storage._load_from_bytes`).
"""

from converters.io.errors import CheckpointError
from converters.io.records import TorchModule
from converters.io.safe_pickle import read_pickle_file

__all__ = ["TorchModule", "read_nvidia_pickle"]


def read_nvidia_pickle(path) -> dict:
  """Reads an NVIDIA network pickle.

  Args:
    path: a stylegan2-ada-pytorch / stylegan3 `.pkl` (any pickle protocol 2-5).

  Returns:
    The pickled dict with every network as a `TorchModule` (use `result['G_ema']`);
    other values (e.g. `training_set_kwargs`) as plain data, None stays None.

  Raises:
    CheckpointError: not such a pickle, or corrupt / truncated.
    UnsafePickleError: the pickle references a global outside the allow-list.
  """
  obj = read_pickle_file(path, "NVIDIA network pickle")
  if not isinstance(obj, dict) or not any(isinstance(v, TorchModule) for v in obj.values()):
    found = f"a dict with keys {list(obj)[:8]}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
    raise CheckpointError(f"{path}: expected a dict of persistent networks (G, D, G_ema, ...), found {found}")
  return obj
