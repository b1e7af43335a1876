"""Reader for NVIDIA StyleGAN2 TensorFlow network pickles, without TensorFlow.

The official files (e.g. stylegan2-ffhq-config-f.pkl) pickle the tuple `(G, D, Gs)` of
`dnnlib.tflib.network.Network` objects: NEWOBJ with no arguments, then BUILD with a dict
(version, name, static_kwargs, components, build_module_src, build_func_name,
variables). Variable values are numpy arrays and numpy float32 scalars. The TF loader
exec()s `build_module_src`; here it is dropped and each network becomes a `TFNetwork`.
"""

from converters.io.errors import CheckpointError
from converters.io.records import TFNetwork
from converters.io.safe_pickle import read_pickle_file

__all__ = ["TFNetwork", "read_tf_pickle"]


def read_tf_pickle(path) -> tuple:
  """Reads a StyleGAN2 TensorFlow network pickle.

  Args:
    path: a `.pkl` of `(G, D, Gs)` (protocol 2-5; NumPy 1.x or 2.x global names).

  Returns:
    Tuple of `TFNetwork`, in pickled order (`[2]` is Gs for official files); a pickle
    of a single network gives a 1-tuple.

  Raises:
    CheckpointError: not such a pickle, or corrupt / truncated.
    UnsafePickleError: the pickle references a global outside the allow-list.
  """
  obj = read_pickle_file(path, "TensorFlow network pickle")
  if isinstance(obj, TFNetwork):
    return (obj,)
  if isinstance(obj, (tuple, list)) and obj and all(isinstance(n, TFNetwork) for n in obj):
    return tuple(obj)
  raise CheckpointError(
    f"{path}: expected a tuple of dnnlib.tflib.network.Network (G, D, Gs), found a {type(obj).__name__}"
  )
