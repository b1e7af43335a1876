"""Torch- and TensorFlow-free readers for checkpoint files (untrusted input).

Checkpoints are pickles; every reader here resolves pickle globals through an explicit
allow-list of data-only stand-ins (see safe_pickle.py), so reading a file never imports
or executes anything it names.
"""

from converters.io.errors import CheckpointError
from converters.io.errors import UnsafePickleError
from converters.io.nvidia_pickle import read_nvidia_pickle
from converters.io.records import TFNetwork
from converters.io.records import TorchModule
from converters.io.sniff import sniff_format
from converters.io.tf_pickle import read_tf_pickle
from converters.io.torch_files import read_torch_file

__all__ = [
  "CheckpointError",
  "TFNetwork",
  "TorchModule",
  "UnsafePickleError",
  "read_nvidia_pickle",
  "read_tf_pickle",
  "read_torch_file",
  "sniff_format",
]
