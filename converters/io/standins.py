"""Data-only stand-ins for the globals that checkpoint pickles reference.

A checkpoint pickle names globals such as `torch._utils._rebuild_tensor_v2` or
`collections.OrderedDict`. The safe unpickler (safe_pickle.py) never imports those
modules; it maps each allow-listed name to a callable defined here (numpy ones in
numpy_standins.py), which only validates its arguments and builds plain Python / numpy
data. Values that depend on bytes read later (legacy torch storages) or on a later BUILD
opcode are returned as `StandIn` placeholders, replaced by their final values in
`safe_pickle.finalize`.
"""

import math
import sys
import types

import numpy as np

from converters.io import limits
from converters.io.errors import CheckpointError

try:  # jax depends on ml_dtypes; only needed for bfloat16 torch storages.
  import ml_dtypes

  _BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
  _BFLOAT16 = None

_MAX_NDIM = 64
_MAX_EXPANDED = 2**26  # Elements a stride-0 (expanded) tensor may reach.


class FrozenClass(type):
  """Metaclass of the stand-in classes: a pickle's BUILD cannot set class attributes.

  Without it, BUILD on a class pushed by GLOBAL (slot-state form) would `setattr` on
  the class and tamper with every later read in the process.
  """

  def __setattr__(cls, name, value):
    raise CheckpointError(f"refused to set attribute {name!r:.40} on {cls.__name__}")

  def __delattr__(cls, name):
    raise CheckpointError(f"refused to delete attribute {name!r:.40} of {cls.__name__}")


class StandIn(metaclass=FrozenClass):
  """Base of placeholders that `safe_pickle.finalize` replaces by final values."""

  __slots__ = ()

  def finalize(self, fn):
    """Returns the final value; `fn` finalizes nested unpickled objects."""
    raise NotImplementedError

  def __setstate__(self, state):
    # Refuses BUILD (which would otherwise set slots past the argument checks, e.g. a
    # negative tensor stride); subclasses that pickle uses BUILD for override this.
    raise CheckpointError(f"unexpected BUILD on a {type(self).__name__}")


class DataOnlyCallable(StandIn):
  """Wraps an allow-listed function: callable with positional arguments only, and,
  unlike a bare function, immune to BUILD (no `__dict__`, `__defaults__` to overwrite).
  """

  __slots__ = ("_fn",)

  def __init__(self, fn):
    self._fn = fn

  def __call__(self, *args):
    return self._fn(*args)

  def finalize(self, fn):
    return self

  def __repr__(self):
    return f"<stand-in {getattr(self._fn, '__name__', 'callable')}>"


class Ready(StandIn):
  """A final value (numpy array or scalar) shielded from BUILD until `finalize`."""

  __slots__ = ("value",)

  def __init__(self, value):
    self.value = value

  def finalize(self, fn):
    return self.value


def _check_int(value, what, minimum=0):
  # bool is an int subclass but never a valid size/offset.
  if type(value) is not int or value < minimum:
    raise CheckpointError(f"expected {what} to be an integer >= {minimum}, found {value!r:.80}")
  return value


def check_shape(value, what):
  """Validates a size / stride / shape: a short sequence of ints >= 0, as a tuple."""
  if not isinstance(value, (tuple, list)) or len(value) > _MAX_NDIM:
    raise CheckpointError(f"expected {what} to be a tuple of at most {_MAX_NDIM} ints, found {value!r:.80}")
  return tuple(_check_int(v, what) for v in value)


def as_bytes(data, what):
  """bytes from bytes, bytearray or (Python 2 pickles) a latin-1 decoded str."""
  if isinstance(data, str):
    data = data.encode("latin-1")
  if not isinstance(data, (bytes, bytearray)):
    raise CheckpointError(f"expected {what} to be bytes, found {type(data).__name__}")
  return bytes(data)


# ---------------------------------------------------------------------------------
# torch: dtypes, storages, tensors.

_TORCH_DTYPES = {
  "float64": "float64",
  "double": "float64",
  "float32": "float32",
  "float": "float32",
  "float16": "float16",
  "half": "float16",
  "bfloat16": "bfloat16",
  "int64": "int64",
  "long": "int64",
  "int32": "int32",
  "int": "int32",
  "int16": "int16",
  "short": "int16",
  "int8": "int8",
  "uint8": "uint8",
  "bool": "bool",
  "complex64": "complex64",
  "cfloat": "complex64",
  "complex128": "complex128",
  "cdouble": "complex128",
}
STORAGE_TYPES = {
  "DoubleStorage": "float64",
  "FloatStorage": "float32",
  "HalfStorage": "float16",
  "BFloat16Storage": "bfloat16",
  "LongStorage": "int64",
  "IntStorage": "int32",
  "ShortStorage": "int16",
  "CharStorage": "int8",
  "ByteStorage": "uint8",
  "BoolStorage": "bool",
  "ComplexFloatStorage": "complex64",
  "ComplexDoubleStorage": "complex128",
  "UntypedStorage": "uint8",
}


def _numpy_dtype(name: str) -> np.dtype:
  if name == "bfloat16":
    if _BFLOAT16 is None:  # pragma: no cover
      raise CheckpointError("bfloat16 tensors need the ml_dtypes package")
    return _BFLOAT16
  return np.dtype(name)


class TorchDType(StandIn):
  """A `torch.float32`-style dtype global; finalizes to the numpy dtype."""

  __slots__ = ("name", "dtype")

  def __init__(self, name: str):
    self.name = name
    self.dtype = _numpy_dtype(_TORCH_DTYPES[name])

  def finalize(self, fn):
    return self.dtype

  def __repr__(self):
    return f"torch.{self.name}"


TORCH_DTYPES = {name: TorchDType(name) for name in _TORCH_DTYPES}


class StorageType(StandIn):
  """A torch storage class such as `torch.FloatStorage`: only its dtype matters.

  It is never instantiated as a real storage; calling it (which a malicious pickle
  could try through REDUCE) fails because it is not callable.
  """

  __slots__ = ("name", "dtype")

  def __init__(self, name: str):
    self.name = name
    self.dtype = _numpy_dtype(STORAGE_TYPES[name])

  def finalize(self, fn):
    return self

  def __repr__(self):
    return f"torch.{self.name}"


STORAGE_TYPE_MARKERS = {name: StorageType(name) for name in STORAGE_TYPES}


class Storage(StandIn):
  """A flat torch storage of `numel` elements of `dtype`; bytes attached when read.

  A legacy view (`view_metadata`) shares the bytes of its root storage.
  """

  __slots__ = ("dtype", "numel", "_data", "_base", "_offset")

  def __init__(self, dtype: np.dtype, numel: int, base=None, offset: int = 0):
    self.dtype = dtype
    self.numel = _check_int(numel, "storage size")
    self._data = None
    self._base = base
    self._offset = offset

  def set_bytes(self, raw: bytes, little_endian: bool = True):
    """Attaches raw storage bytes (`numel * itemsize` of them)."""
    nbytes = self.numel * self.dtype.itemsize
    if len(raw) != nbytes:
      raise CheckpointError(
        f"storage of {self.numel} {self.dtype} elements needs {nbytes} bytes, found {len(raw)} (file truncated?)"
      )
    data = np.frombuffer(raw, self.dtype)
    if little_endian != (sys.byteorder == "little"):
      data = data.byteswap()
    self._data = data

  def view(self, offset, numel) -> "Storage":
    _check_int(offset, "storage view offset")
    if offset + _check_int(numel, "storage view size") > self.numel:
      raise CheckpointError(f"storage view [{offset}, {offset + numel}) exceeds its storage of {self.numel} elements")
    return Storage(self.dtype, numel, base=self, offset=offset)

  @property
  def loaded(self) -> bool:
    return self._base.loaded if self._base is not None else self._data is not None

  def array(self) -> np.ndarray:
    """The storage as a read-only 1-d array."""
    if self._base is not None:
      return self._base.array()[self._offset : self._offset + self.numel]
    if self._data is None:
      raise CheckpointError("a tensor storage was referenced but its bytes were never found")
    return self._data

  def finalize(self, fn):
    return np.array(self.array())


class LazyTensor(StandIn):
  """A tensor view (offset, size, stride in elements) into a `Storage`."""

  __slots__ = ("storage", "offset", "size", "stride")

  def __init__(self, storage, offset, size, stride):
    if not isinstance(storage, Storage):
      raise CheckpointError(f"expected a tensor storage, found {type(storage).__name__}")
    self.storage = storage
    self.offset = _check_int(offset, "tensor storage offset")
    self.size = check_shape(size, "tensor size")
    self.stride = check_shape(stride, "tensor stride")
    if len(self.stride) != len(self.size):
      raise CheckpointError(f"tensor size {self.size} and stride {self.stride} differ in rank")

  def finalize(self, fn):
    return self.materialize()

  def materialize(self) -> np.ndarray:
    """Copies the strided view into a new C-contiguous, writable array."""
    data = self.storage.array()
    if 0 in self.size:
      return np.zeros(self.size, data.dtype)
    last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if last >= data.size:
      raise CheckpointError(
        f"tensor of size {self.size}, stride {self.stride}, offset {self.offset} reads "
        f"element {last} of a storage with only {data.size} elements"
      )
    count = math.prod(self.size)
    if count > max(data.size, _MAX_EXPANDED):
      # Zero strides can expand a tiny storage into a memory bomb; real checkpoints
      # store dense tensors, so refuse anything far larger than its storage.
      raise CheckpointError(f"tensor of size {self.size} expands a storage of {data.size} elements implausibly")
    itemsize = data.dtype.itemsize
    limits.current().charge_tensor_bytes(count * itemsize)
    view = np.lib.stride_tricks.as_strided(
      data[self.offset :], shape=self.size, strides=tuple(s * itemsize for s in self.stride), writeable=False
    )
    return np.array(view, order="C")


def rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
  """Stand-in for `torch._utils._rebuild_tensor_v2`; hooks and metadata are ignored."""
  del requires_grad, backward_hooks, metadata
  return LazyTensor(storage, storage_offset, size, stride)


def rebuild_tensor(storage, storage_offset, size, stride):
  """Stand-in for the pre-1.0 `torch._utils._rebuild_tensor`."""
  return LazyTensor(storage, storage_offset, size, stride)


def rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
  """Stand-in for `torch._utils._rebuild_parameter[_with_state]`: the tensor itself."""
  del requires_grad, backward_hooks, state
  if not isinstance(data, LazyTensor):
    raise CheckpointError(f"expected a tensor inside a Parameter, found {type(data).__name__}")
  return data


# ---------------------------------------------------------------------------------
# Python containers.


class OrderedDictStandIn(dict, metaclass=FrozenClass):
  """`collections.OrderedDict`: a dict whose instances accept BUILD attributes.

  torch state dicts carry a `_metadata` attribute set by BUILD after the items; a plain
  dict would reject it. `finalize` turns these into plain (ordered) dicts.
  """


class EasyDictStandIn(dict, metaclass=FrozenClass):
  """`dnnlib.util.EasyDict`: NEWOBJ with no arguments, then SETITEMS."""


class NamespaceStandIn(StandIn):
  """`argparse.Namespace`: NEWOBJ, then BUILD with the attribute dict."""

  __slots__ = ("attrs",)  # No instance __dict__: BUILD cannot shadow methods.

  def __setstate__(self, state):
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
      raise CheckpointError("argparse.Namespace state is not a dict of attributes")
    self.attrs = state

  def finalize(self, fn):
    attrs = getattr(self, "attrs", {})
    return types.SimpleNamespace(**{k: fn(v) for k, v in attrs.items()})


def make_set(items=()):
  """`builtins.set` (protocols <= 3 pickle sets as REDUCE set([...]))."""
  return set(_check_iterable(items))


def make_frozenset(items=()):
  return frozenset(_check_iterable(items))


def _check_iterable(items):
  if not isinstance(items, (list, tuple, set, frozenset)):
    raise CheckpointError(f"expected a list of set items, found {type(items).__name__}")
  return items


def make_bytearray(data=b"", encoding=None):
  """`builtins.bytearray` from bytes (or latin-1 str); never from a size."""
  if isinstance(data, str) and encoding not in (None, "latin1", "latin-1"):
    raise CheckpointError(f"unsupported bytearray encoding {encoding!r}")
  return bytearray(as_bytes(data, "bytearray data"))


def make_bytes(data=b"", encoding=None):
  """`builtins.bytes`: protocol 2 pickles `b''` as REDUCE bytes(); never from a size."""
  return bytes(make_bytearray(data, encoding))


def codecs_encode(text, encoding="utf-8", errors="strict"):
  """`_codecs.encode`, which protocol 2 uses for bytes: latin-1 str -> bytes only."""
  if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
    raise CheckpointError(f"unsupported _codecs.encode call with encoding {encoding!r:.40}")
  return text.encode("latin-1")
