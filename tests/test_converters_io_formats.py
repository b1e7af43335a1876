"""Pickle protocol variants and hand-built torch.save files (strides, dtypes, endianness).

torch is not installed, so torch files are written here with a pure-Python pickler that
emits the same GLOBAL / STACK_GLOBAL / BINPERSID opcodes torch does.
"""

import argparse
import collections
import io
import pickle
import pickletools
import types
import zipfile

import ml_dtypes
import numpy as np
import pytest

from converters import io as sio
from converters.io import torch_files
from converters.io.safe_pickle import read_pickle


def _opcodes(data):
  return {op.name for op, _, _ in pickletools.genops(data)}


# ----------------------------------------------------------------------------------
# Protocol variants through the allow-listed stand-ins.


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_builtin_structures_all_protocols(protocol):
  obj = {
    "list": [1, -3, 2**70, 2.5, "str", b"raw\x00bytes", None, True, (1, (2, "x"))],
    "nested": {"bytearray": bytearray(b"xy"), "empty": {}, "tuple": ()},
    "set": {1, 2},
    "frozenset": frozenset({"a"}),
    "od": collections.OrderedDict([("z", 1), ("a", [2])]),
  }
  data = pickle.dumps(obj, protocol)
  ops = _opcodes(data)
  # OrderedDict / set / bytearray globals: GLOBAL up to protocol 3, STACK_GLOBAL after.
  assert ("GLOBAL" in ops) == (protocol < 4)
  assert ("STACK_GLOBAL" in ops) == (protocol >= 4)
  out = read_pickle(io.BytesIO(data), "x.pkl")
  assert out == obj
  assert type(out["od"]) is dict and list(out["od"]) == ["z", "a"]
  assert type(out["list"][5]) is bytes and type(out["nested"]["bytearray"]) is bytearray


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_and_namespace_all_protocols(protocol):
  arrays = {
    "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
    "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "strided": np.arange(20, dtype=np.int64).reshape(4, 5)[:, ::2],
    "big_endian": np.arange(3, dtype=">f4"),
    "bool": np.array([True, False]),
    "f16": np.ones((2, 2), np.float16),
    "empty": np.zeros((0, 3), np.uint8),
    "zero_d": np.array(3.5, np.float32),
  }
  scalars = {"f64": np.float64(1.5), "f32": np.float32(-2.0), "i64": np.int64(7), "bool": np.bool_(True)}
  obj = {"arrays": arrays, "scalars": scalars, "args": argparse.Namespace(size=32, lr=0.1)}
  out = read_pickle(io.BytesIO(pickle.dumps(obj, protocol)), "x.pkl")
  for key, value in arrays.items():
    got = out["arrays"][key]
    assert type(got) is np.ndarray and got.dtype.isnative and got.flags.c_contiguous
    assert got.dtype == value.dtype.newbyteorder("=")
    np.testing.assert_array_equal(got, value)
  for key, value in scalars.items():
    got = out["scalars"][key]
    assert isinstance(got, np.generic) and got.dtype == value.dtype and got == value
  assert out["args"] == types.SimpleNamespace(size=32, lr=0.1)


# ----------------------------------------------------------------------------------
# Hand-built torch.save files.


class _Global:
  """A reference to a global of a module that is not installed."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):  # save_reduce requires a callable.
    raise AssertionError("never called")


_ORDERED_DICT = _Global("collections", "OrderedDict")
_REBUILD_V2 = _Global("torch._utils", "_rebuild_tensor_v2")
_REBUILD_PARAM = _Global("torch._utils", "_rebuild_parameter")


class _Reduce:
  def __init__(self, func, args, state=None, items=None):
    self.func, self.args, self.state, self.items = func, args, state, items

  def __reduce__(self):
    return (self.func, self.args, self.state, None, iter(self.items) if self.items is not None else None)


class _Storage:
  def __init__(self, kind, key, data, location="cpu", view=None):
    self.kind, self.key, self.data, self.location, self.view = kind, key, data, location, view


class _Pickler(pickle._Pickler):  # pylint: disable=protected-access
  """Pure-Python pickler: `_Global` as GLOBAL / STACK_GLOBAL, `_Storage` as BINPERSID."""

  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def __init__(self, file, protocol, legacy):
    super().__init__(file, protocol)
    self.legacy = legacy

  def save_global_ref(self, obj):
    if self.proto >= 4:
      self.save(obj.module)
      self.save(obj.name)
      self.write(pickle.STACK_GLOBAL)
    else:
      self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
    self.memoize(obj)

  dispatch[_Global] = save_global_ref

  def persistent_id(self, obj):
    if not isinstance(obj, _Storage):
      return None
    module = "torch.cuda" if obj.location.startswith("cuda") else "torch"
    pid = ("storage", _Global(module, obj.kind), obj.key, obj.location, obj.data.size)
    return pid + (obj.view,) if self.legacy else pid


def _dumps(obj, legacy, protocol=2):
  buf = io.BytesIO()
  _Pickler(buf, protocol, legacy).dump(obj)
  return buf.getvalue()


def _tensor(storage, offset, size, stride, parameter=False):
  t = _Reduce(_REBUILD_V2, (storage, offset, size, stride, False, _Reduce(_ORDERED_DICT, ())))
  return _Reduce(_REBUILD_PARAM, (t, True, _Reduce(_ORDERED_DICT, ()))) if parameter else t


def _state_dict(entries):
  return _Reduce(_ORDERED_DICT, (), state={"_metadata": _Reduce(_ORDERED_DICT, ())}, items=list(entries.items()))


def _write_zip(path, obj, storages, byteorder="little", top="archive", protocol=2):
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr(f"{top}/data.pkl", _dumps(obj, legacy=False, protocol=protocol))
    zf.writestr(f"{top}/byteorder", byteorder)
    for s in storages:
      zf.writestr(
        f"{top}/data/{s.key}", s.data.astype(s.data.dtype.newbyteorder("<" if byteorder == "little" else ">")).tobytes()
      )
    zf.writestr(f"{top}/version", "3\n")


def _write_legacy(path, obj, storages, little_endian=True):
  order = "little" if little_endian else "big"
  sys_info = {"protocol_version": 1001, "little_endian": little_endian, "type_sizes": {"short": 2, "int": 4, "long": 4}}
  out = [
    pickle.dumps(torch_files.LEGACY_MAGIC, 2),
    pickle.dumps(1001, 2),
    pickle.dumps(sys_info, 2),
    _dumps(obj, legacy=True),
    pickle.dumps([s.key for s in storages], 2),
  ]
  for s in storages:
    out.append(s.data.size.to_bytes(8, order, signed=True))
    out.append(s.data.astype(s.data.dtype.newbyteorder("<" if little_endian else ">")).tobytes())
  path.write_bytes(b"".join(out))


def _strided_case():
  base = np.arange(24, dtype=np.float32)
  storage = _Storage("FloatStorage", "0", base)
  obj = _state_dict(
    {
      "full": _tensor(storage, 0, (2, 3, 4), (12, 4, 1), parameter=True),
      "transposed": _tensor(storage, 0, (4, 3), (1, 4)),
      "offset_step": _tensor(storage, 5, (3,), (2,)),
      "broadcast": _tensor(storage, 1, (2, 3), (0, 1)),
      "scalar": _tensor(storage, 7, (), ()),
      "empty": _tensor(storage, 0, (0, 3), (3, 1)),
    }
  )
  expected = {
    "full": base.reshape(2, 3, 4),
    "transposed": base[:12].reshape(3, 4).T,
    "offset_step": base[5:11:2],
    "broadcast": np.broadcast_to(base[1:4], (2, 3)),
    "scalar": np.array(7.0, np.float32),
    "empty": np.zeros((0, 3), np.float32),
  }
  return obj, [storage], expected


def _check(result, expected):
  assert list(result) == list(expected)
  for key, value in expected.items():
    got = result[key]
    assert got.shape == value.shape and got.dtype == value.dtype, key
    assert got.flags.c_contiguous and got.flags.writeable, key
    np.testing.assert_array_equal(got, value, err_msg=key)


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_zip_strides_offsets_shared_storage(tmp_path, byteorder, protocol):
  obj, storages, expected = _strided_case()
  path = tmp_path / "t.pt"
  _write_zip(path, obj, storages, byteorder=byteorder, protocol=protocol)
  assert sio.sniff_format(path) == "torch_zip"
  _check(sio.read_torch_file(path), expected)


@pytest.mark.parametrize("little_endian", [True, False])
def test_legacy_strides_offsets_and_views(tmp_path, little_endian):
  obj, storages, expected = _strided_case()
  # A legacy storage view: elements [4, 10) of the root storage, under its own key.
  view = _Storage("FloatStorage", "0", storages[0].data, view=("v1", 4, 6))
  obj.items.append(("from_view", _tensor(view, 1, (2, 2), (2, 1))))
  expected["from_view"] = np.arange(24, dtype=np.float32)[5:9].reshape(2, 2)
  path = tmp_path / "t.pth"
  _write_legacy(path, obj, storages, little_endian=little_endian)
  assert sio.sniff_format(path) == "torch_legacy"
  _check(sio.read_torch_file(path), expected)


@pytest.mark.parametrize("legacy", [False, True])
def test_storage_dtypes(tmp_path, legacy):
  values = {
    "DoubleStorage": np.linspace(-1, 1, 5),
    "FloatStorage": np.float32([1.5, -2]),
    "HalfStorage": np.float16([0.5, 65504]),
    "BFloat16Storage": np.array([1.0, -3.5], ml_dtypes.bfloat16),
    "LongStorage": np.int64([2**40, -1]),
    "IntStorage": np.int32([-7, 9]),
    "ShortStorage": np.int16([300, -300]),
    "CharStorage": np.int8([-1, 2]),
    "ByteStorage": np.uint8([0, 255]),
    "BoolStorage": np.array([True, False]),
  }
  storages = [
    _Storage(kind, str(i), v, location="cuda:0" if i % 2 else "cpu") for i, (kind, v) in enumerate(values.items())
  ]
  obj = _state_dict({s.kind: _tensor(s, 0, s.data.shape, (1,)) for s in storages})
  path = tmp_path / "t.pt"
  (_write_legacy if legacy else _write_zip)(path, obj, storages)
  _check(sio.read_torch_file(path), values)


def test_zip_with_file_stem_folder_and_nested_containers(tmp_path):
  storage = _Storage("FloatStorage", "3", np.float32([1, 2, 3, 4]))
  obj = {
    "g_ema": _state_dict({"w": _tensor(storage, 0, (2, 2), (2, 1))}),
    "latent_avg": _tensor(storage, 2, (2,), (1,)),
    "step": 10,
    "names": ["a", "b"],
    "args": _Reduce(_Global("argparse", "Namespace"), (), state={"size": 256}),
  }
  path = tmp_path / "550000.pt"
  _write_zip(path, obj, [storage], top="550000")
  out = sio.read_torch_file(path)
  np.testing.assert_array_equal(out["g_ema"]["w"], [[1, 2], [3, 4]])
  np.testing.assert_array_equal(out["latent_avg"], [3, 4])
  assert out["step"] == 10 and out["names"] == ["a", "b"] and out["args"].size == 256


def test_tensor_reading_past_its_storage(tmp_path):
  storage = _Storage("FloatStorage", "0", np.float32([1, 2, 3]))
  path = tmp_path / "t.pt"
  _write_zip(path, {"w": _tensor(storage, 1, (3,), (1,))}, [storage])
  with pytest.raises(sio.CheckpointError, match="reads element 3 of a storage"):
    sio.read_torch_file(path)


def test_zip_missing_storage_member(tmp_path):
  storage = _Storage("FloatStorage", "0", np.float32([1, 2, 3]))
  path = tmp_path / "t.pt"
  _write_zip(path, {"w": _tensor(storage, 0, (3,), (1,))}, [])
  with pytest.raises(sio.CheckpointError, match="missing storage member archive/data/0"):
    sio.read_torch_file(path)


def test_zip_without_data_pkl(tmp_path):
  path = tmp_path / "t.pt"
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("model/code/__torch__.py", "def forward(self): pass")
  with pytest.raises(sio.CheckpointError, match="no model/data.pkl"):
    sio.read_torch_file(path)


@pytest.mark.parametrize(
  "size,stride,offset,match",
  [
    ((3,), (-1,), 2, "integer >= 0"),
    ((2,), (1, 1), 0, "differ in rank"),
    ((2**20, 2**20), (0, 0), 0, "implausibly"),
    ((2,), (1,), True, "integer >= 0"),
  ],
)
def test_malformed_tensor_views(tmp_path, size, stride, offset, match):
  storage = _Storage("FloatStorage", "0", np.float32([1, 2, 3]))
  path = tmp_path / "t.pt"
  _write_zip(path, {"w": _tensor(storage, offset, size, stride)}, [storage])
  with pytest.raises(sio.CheckpointError, match=match):
    sio.read_torch_file(path)


def test_build_cannot_bypass_tensor_checks(tmp_path):
  # BUILD with a slot state would set a negative stride after the argument checks.
  storage = _Storage("FloatStorage", "0", np.float32([1, 2, 3]))
  tensor = _Reduce(
    _REBUILD_V2,
    (storage, 2, (3,), (1,), False, _Reduce(_ORDERED_DICT, ())),
    state=(None, {"stride": (-1,), "offset": 2}),
  )
  path = tmp_path / "t.pt"
  _write_zip(path, {"w": tensor}, [storage])
  with pytest.raises(sio.CheckpointError, match="unexpected BUILD on a LazyTensor"):
    sio.read_torch_file(path)
