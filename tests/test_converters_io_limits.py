"""Small hostile files are refused quickly and in little memory (converters.io.limits).

The two attacks of issue 15, rebuilt by benchmarks/bench_hostile_files.py: a ~460-byte NVIDIA-style pickle whose module
state nests a shared list `[x, x]` forty levels deep (2**40 leaves when expanded), and a
~1 MB torch zip whose data.pkl inflates to 1 GiB. Each read runs in a subprocess that
reports its wall time and peak memory (ru_maxrss).
"""

import json
import os
import pathlib
import pickle
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from benchmarks import bench_hostile_files as hostile
from converters import io as sio
from converters.io import limits

REPO = pathlib.Path(__file__).resolve().parents[1]
PROBE = """
import json, resource, sys, time
from converters import io as sio
from ss_jax.stylegan2.checkpoint import load_checkpoint
t = time.time()
try:
  getattr(sio, sys.argv[2])(sys.argv[1]) if sys.argv[2] != "convert" else load_checkpoint(sys.argv[1])
  out = "loaded"
except sio.CheckpointError as e:
  out = str(e)
print(json.dumps({"result": out, "seconds": time.time() - t,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def probe(path, reader):
  p = subprocess.run(
    [sys.executable, "-c", PROBE, str(path), reader],
    capture_output=True,
    text=True,
    timeout=120,
    cwd=REPO,
    env=dict(os.environ, PYTHONPATH=str(REPO)),
  )
  assert p.returncode == 0, p.stderr[-2000:]
  return json.loads(p.stdout.strip().splitlines()[-1])


def test_nested_memo_pickle_is_linear(tmp_path):
  data = hostile.nested_module_pickle(40)
  assert len(data) < 700
  path = tmp_path / "memo.pkl"
  path.write_bytes(data)
  g = sio.read_nvidia_pickle(path)["G_ema"]
  x = g.attrs["payload"]
  for _ in range(40):  # shared references stay shared: the converted graph is 40 lists
    assert x[0] is x[1]
    x = x[0]
  r = probe(path, "convert")  # the converter then names what is missing, quickly
  assert r["seconds"] < 5 and r["max_rss_mb"] < 1024, r
  assert r["result"].startswith(str(path)), r


def test_deep_nesting_refused(tmp_path):
  path = tmp_path / "deep.pkl"
  path.write_bytes(hostile.nested_module_pickle(limits.MAX_DEPTH + 50, shared=False))
  with pytest.raises(sio.CheckpointError, match=f"nested deeper than {limits.MAX_DEPTH}"):
    sio.read_nvidia_pickle(path)


def test_object_count_refused(tmp_path, monkeypatch):
  monkeypatch.setattr(limits, "MAX_OBJECTS", 1000)
  path = tmp_path / "many.pkl"
  path.write_bytes(pickle.dumps([[i] for i in range(2000)], 4))
  with pytest.raises(sio.CheckpointError, match="more than 1,000 objects"):
    sio.read_nvidia_pickle(path)


# ----------------------------------------------------------------------------- zip bombs


def test_zip_bomb_refused_fast_and_small(tmp_path):
  path = tmp_path / "bomb.pt"
  path.write_bytes(hostile.zip_bomb())
  assert path.stat().st_size < 1.1e6
  with zipfile.ZipFile(path) as zf:  # a well-formed archive: zipfile itself accepts it
    assert zf.getinfo("archive/data.pkl").file_size == 1 << 30
  r = probe(path, "convert")  # detection, the BiSeNet check and the torch reader all meet it
  assert r["seconds"] < 5 and r["max_rss_mb"] < 1024, r
  assert "refused zip member archive/data.pkl" in r["result"] and "more than 100x" in r["result"], r


def test_zip_member_lying_about_its_size(tmp_path):
  """Declared small, inflates large: zipfile stops at the declared size; the CRC fails."""
  data, _, crc = hostile.zeros_deflate()
  path = tmp_path / "liar.pt"
  path.write_bytes(hostile.zip_bytes([("archive/data.pkl", data, 50_000_000, crc)]))
  t = time.time()
  with pytest.raises(sio.CheckpointError, match="cannot read torch file"):
    sio.read_torch_file(path)
  assert time.time() - t < 5


def test_tensor_expansion_budget(tmp_path, monkeypatch):
  """Zero-stride views of one storage cannot multiply memory past the file's budget."""
  from converters.io import standins as si

  monkeypatch.setattr(limits, "TENSOR_SLACK", 1 << 20)
  with limits.budget_for(tmp_path / "missing"):  # file size 0: 1 MiB of tensors allowed
    storage = si.Storage(np.dtype(np.float32), 4)
    storage.set_bytes(np.arange(4, dtype=np.float32).tobytes())
    small = si.LazyTensor(storage, 0, (4,), (1,)).materialize()
    np.testing.assert_array_equal(small, np.arange(4))
    big = si.LazyTensor(storage, 0, (1024, 256), (0, 0))  # 1 MiB of a 16-byte storage
    with pytest.raises(sio.CheckpointError, match="more memory than"):
      for _ in range(2):
        big.materialize()
