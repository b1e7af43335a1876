"""Data-only stand-ins for the numpy globals that checkpoint pickles reference.

NumPy pickles arrays as `_reconstruct(ndarray, (0,), b'b')` followed by BUILD with
(version, shape, dtype, is_fortran, raw_bytes) (protocols 2-4) or as
`_frombuffer(buffer, dtype, shape, order)` (protocol 5), dtypes as `dtype(spec, align,
copy)` followed by BUILD, and scalars as `scalar(dtype, raw_bytes)`. These stand-ins
rebuild the same values with `np.frombuffer`; object, structured and other non-numeric
dtypes are refused, so a pickle can never smuggle objects in through an array.
"""

import math
import re

import numpy as np

from converters.io import standins as si
from converters.io.errors import CheckpointError

# Only numeric, bool and fixed-width string dtypes; object/void/structured are refused.
_DTYPE_SPEC = re.compile(r"b1|[iu][1248]|f(2|4|8|12|16)|c(8|16|24|32)|[SU][0-9]{1,6}")


class DTypeProxy(si.StandIn):
  """`numpy.dtype(spec, align, copy)` followed by BUILD of its state tuple."""

  __slots__ = ("dtype",)

  def __init__(self, spec, align=False, copy=True):
    del align, copy
    if not isinstance(spec, str) or not _DTYPE_SPEC.fullmatch(spec):
      raise CheckpointError(
        f"unsupported numpy dtype {spec!r:.40} (only numeric, bool and fixed-width string dtypes are read)"
      )
    self.dtype = np.dtype(spec)

  def __setstate__(self, state):
    # numpy writes (version, byteorder, subarray, names, fields, elsize, alignment,
    # flags[, metadata]); only the byte order matters for the dtypes allowed above.
    if not isinstance(state, tuple) or len(state) not in (8, 9):
      raise CheckpointError(f"unexpected numpy dtype state {state!r:.80}")
    if any(x is not None for x in state[2:5]):
      raise CheckpointError("structured or sub-array numpy dtypes are not supported")
    byteorder = state[1]
    if byteorder not in ("<", ">", "|", "="):
      raise CheckpointError(f"unexpected numpy byte order {byteorder!r:.20}")
    if byteorder in "<>":
      self.dtype = self.dtype.newbyteorder(byteorder)

  def finalize(self, fn):
    return self.dtype


def _dtype_of(proxy) -> np.dtype:
  if not isinstance(proxy, DTypeProxy):
    raise CheckpointError(f"expected a numpy dtype, found {type(proxy).__name__}")
  return proxy.dtype


def numpy_scalar(dtype, data=None):
  """`numpy.core.multiarray.scalar(dtype, raw_bytes)` -> numpy scalar."""
  dt = _dtype_of(dtype)
  raw = si.as_bytes(data, "numpy scalar data")
  if len(raw) != dt.itemsize:
    raise CheckpointError(f"numpy {dt} scalar needs {dt.itemsize} bytes, found {len(raw)}")
  return si.Ready(np.frombuffer(raw, dt)[0])


class NDArrayType(si.StandIn):
  """Marker for the `numpy.ndarray` global; only valid as `_reconstruct`'s subtype."""

  __slots__ = ()

  def finalize(self, fn):
    return self

  def __repr__(self):
    return "numpy.ndarray"


NDARRAY = NDArrayType()


def _array_from_bytes(raw, dt, shape, order) -> np.ndarray:
  count = math.prod(shape)
  if len(raw) != count * dt.itemsize:
    raise CheckpointError(
      f"numpy array of shape {shape} and dtype {dt} needs {count * dt.itemsize} bytes, found {len(raw)}"
    )
  arr = np.frombuffer(raw, dt).reshape(shape, order=order)
  # Copy: writable, C-contiguous, native byte order.
  return np.array(arr, dtype=dt.newbyteorder("="), order="C")


class ArrayProxy(si.StandIn):
  """An array from `_reconstruct(ndarray, (0,), b'b')`, filled by its BUILD.

  The BUILD state is (version, shape, dtype, is_fortran, raw_bytes).
  """

  __slots__ = ("array",)

  def __init__(self):
    self.array = None

  def __setstate__(self, state):
    if isinstance(state, tuple) and len(state) == 5:
      state = state[1:]
    if not isinstance(state, tuple) or len(state) != 4:
      raise CheckpointError(f"unexpected numpy array state of type {type(state).__name__}")
    shape, dtype, is_fortran, raw = state
    self.array = _array_from_bytes(
      si.as_bytes(raw, "numpy array data"),
      _dtype_of(dtype),
      si.check_shape(shape, "numpy array shape"),
      "F" if is_fortran else "C",
    )

  def finalize(self, fn):
    if self.array is None:
      raise CheckpointError("numpy array pickled without its data (missing BUILD)")
    return self.array


def numpy_reconstruct(subtype, shape, dtype_code):
  """`numpy.core.multiarray._reconstruct`; only plain ndarrays (no subclasses)."""
  del shape, dtype_code
  if subtype is not NDARRAY:
    raise CheckpointError(f"refused numpy array subtype {subtype!r:.60}")
  return ArrayProxy()


def numpy_frombuffer(buf, dtype, shape, order="C"):
  """`numpy.core.numeric._frombuffer`, which protocol 5 uses for arrays."""
  if order not in ("C", "F"):
    raise CheckpointError(f"unexpected numpy array order {order!r:.10}")
  return si.Ready(
    _array_from_bytes(
      si.as_bytes(buf, "numpy array data"), _dtype_of(dtype), si.check_shape(shape, "numpy array shape"), order
    )
  )
