"""Malicious checkpoints must be refused before any side effect (no code execution)."""

import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from converters import io as sio
from converters.io import standins
from converters.io import torch_files
from converters.io.safe_pickle import ALLOWED_GLOBALS

LEGACY_SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


class _Evil:
  """Pickles as `func(*args)`: what a malicious checkpoint embeds."""

  def __init__(self, func, *args):
    self.func, self.args = func, args

  def __reduce__(self):
    return self.func, self.args


def _payloads(marker):
  """(pickle bytes, refused 'module.name') pairs that would create `marker`."""
  cmd = f"touch {marker}"
  out = []
  for proto in (2, 4):
    out += [
      (pickle.dumps({"G_ema": _Evil(os.system, cmd)}, proto), f"{os.system.__module__}.system"),
      (pickle.dumps([_Evil(eval, f"open({str(marker)!r}, 'w').close()")], proto), "builtins.eval"),
      (pickle.dumps(_Evil(subprocess.Popen, ["touch", str(marker)]), proto), "subprocess.Popen"),
    ]
  # Hand-written: GLOBAL + REDUCE, and the protocol 0 INST opcode.
  out.append((b"cos\nsystem\n(V" + cmd.encode() + b"\ntR.", "os.system"))
  out.append((b"(V" + cmd.encode() + b"\nios\nsystem\n.", "os.system"))
  return out


def _legacy_stream(obj_pickle: bytes, keys=()) -> bytes:
  return (
    pickle.dumps(torch_files.LEGACY_MAGIC, 2)
    + pickle.dumps(1001, 2)
    + pickle.dumps(LEGACY_SYS_INFO, 2)
    + obj_pickle
    + pickle.dumps(list(keys), 2)
  )


def _torch_zip(obj_pickle: bytes) -> bytes:
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as zf:
    zf.writestr("archive/data.pkl", obj_pickle)
    zf.writestr("archive/version", "3\n")
    zf.writestr("archive/byteorder", "little")
  return buf.getvalue()


def _assert_refused(read, path, refused, marker):
  with pytest.raises(sio.UnsafePickleError) as info:
    read(path)
  message = str(info.value)
  assert f"'{refused}'" in message and str(path) in message and "\n" not in message
  assert f"{info.value.module}.{info.value.name}" == refused
  assert not marker.exists(), "the payload ran"


@pytest.fixture
def marker(tmp_path):
  path = tmp_path / "pwned"
  yield path
  assert not path.exists()


def test_plain_pickles_refused(tmp_path, marker):
  for i, (payload, refused) in enumerate(_payloads(marker)):
    path = tmp_path / f"evil{i}.pkl"
    path.write_bytes(payload)
    _assert_refused(sio.read_nvidia_pickle, path, refused, marker)
    _assert_refused(sio.read_tf_pickle, path, refused, marker)
    # Format sniffing falls back to the allow-list reader, which names the payload.
    _assert_refused(sio.sniff_format, path, refused, marker)


def test_torch_zip_data_pkl_refused(tmp_path, marker):
  for i, (payload, refused) in enumerate(_payloads(marker)):
    path = tmp_path / f"evil{i}.pt"
    path.write_bytes(_torch_zip(payload))
    assert sio.sniff_format(path) == "torch_zip"
    _assert_refused(sio.read_torch_file, path, refused, marker)


def test_legacy_stream_refused(tmp_path, marker):
  for i, (payload, refused) in enumerate(_payloads(marker)):
    path = tmp_path / f"evil{i}.pth"
    path.write_bytes(_legacy_stream(payload))
    assert sio.sniff_format(path) == "torch_legacy"
    _assert_refused(sio.read_torch_file, path, refused, marker)
    # Also in the sys_info and storage-key pickles, which carry no globals normally.
    path.write_bytes(pickle.dumps(torch_files.LEGACY_MAGIC, 2) + pickle.dumps(1001, 2) + payload)
    _assert_refused(sio.read_torch_file, path, refused, marker)


def test_payload_inside_embedded_storage_blob(tmp_path, marker):
  # `_load_from_bytes` is allow-listed; the bytes it gets are parsed just as safely.
  payload, refused = _payloads(marker)[0]

  class LoadFromBytes:
    def __reduce__(self):
      return _fake_global("torch.storage", "_load_from_bytes"), (_legacy_stream(payload),)

  path = tmp_path / "blob.pkl"
  path.write_bytes(_dumps_with_fake_globals({"G_ema": LoadFromBytes()}))
  _assert_refused(sio.read_nvidia_pickle, path, refused, marker)


def test_non_allowlisted_module_class_refused(tmp_path, marker):
  # A persistent module whose child is a plain torch module class: refused by name.
  class Conv:
    def __reduce__(self):
      return _fake_global("torch.nn.modules.conv", "Conv2d"), ()

  class Persistent:
    def __reduce__(self):
      meta = {
        "type": "class",
        "version": 6,
        "module_src": "import os; os.system('x')",
        "class_name": "Net",
        "state": {"_modules": {"conv": Conv()}},
      }
      return _fake_global("torch_utils.persistence", "_reconstruct_persistent_obj"), (meta,)

  path = tmp_path / "net.pkl"
  path.write_bytes(_dumps_with_fake_globals({"G_ema": Persistent()}))
  assert sio.sniff_format(path) == "nvidia_pkl"
  _assert_refused(sio.read_nvidia_pickle, path, "torch.nn.modules.conv.Conv2d", marker)


def test_allowlisted_names_reject_dangerous_arguments(tmp_path):
  path = tmp_path / "obj.pkl"
  path.write_bytes(pickle.dumps({"G_ema": np.array([print, "x"], dtype=object)}, 4))
  with pytest.raises(sio.CheckpointError, match="unsupported numpy dtype"):
    sio.read_nvidia_pickle(path)
  # An ndarray subclass is refused as a _reconstruct subtype.
  path.write_bytes(pickle.dumps(np.ma.masked_array([1.0]), 2))
  with pytest.raises(sio.UnsafePickleError):
    sio.read_nvidia_pickle(path)


@pytest.mark.parametrize(
  "module,name",
  [
    ("collections", "OrderedDict"),
    ("dnnlib.util", "EasyDict"),
    ("torch", "FloatStorage"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("dnnlib.tflib.network", "Network"),
    ("numpy", "ndarray"),
    ("torch.storage", "_load_from_bytes"),
    ("torch", "float32"),
  ],
)
@pytest.mark.parametrize("state", [{"dtype": 1, "__init__": 2}, (None, {"dtype": 1, "__defaults__": (1,)})])
def test_build_cannot_tamper_with_allowlisted_globals(tmp_path, module, name, state):
  # GLOBAL then BUILD: a default BUILD would set attributes on the shared stand-in
  # (e.g. the dtype of torch.FloatStorage) for every later read in the process.
  path = tmp_path / "tamper.pkl"
  path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + pickle.dumps(state, 2)[2:-1] + b"b.")
  with pytest.raises(sio.CheckpointError):
    sio.read_nvidia_pickle(path)
  assert ALLOWED_GLOBALS[("torch", "FloatStorage")].dtype == np.float32
  assert not hasattr(ALLOWED_GLOBALS[("collections", "OrderedDict")], "dtype")
  assert standins.rebuild_tensor_v2.__defaults__ == (False, None, None)
  assert not hasattr(standins.rebuild_tensor_v2, "dtype")


def test_torch_and_tensorflow_never_imported():
  assert "torch" not in sys.modules and "tensorflow" not in sys.modules


# Helpers: pickle references to modules that are not installed (torch, torch_utils).


class _FakeGlobal:
  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):  # save_reduce requires a callable.
    raise AssertionError("never called")


def _fake_global(module, name):
  return _FakeGlobal(module, name)


class _Pickler(pickle._Pickler):  # pylint: disable=protected-access
  """Pure-Python pickler that writes `_FakeGlobal` as GLOBAL / STACK_GLOBAL."""

  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def save_fake_global(self, obj):
    if self.proto >= 4:
      self.save(obj.module)
      self.save(obj.name)
      self.write(pickle.STACK_GLOBAL)
    else:
      self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
    self.memoize(obj)

  dispatch[_FakeGlobal] = save_fake_global


def _dumps_with_fake_globals(obj, protocol=4):
  buf = io.BytesIO()
  _Pickler(buf, protocol).dump(obj)
  return buf.getvalue()
