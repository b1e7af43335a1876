"""`python -m converters`: refusals and one-line errors for bad input, nothing written."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from converters import nvidia, rosinality
from converters.io import CheckpointError, read_nvidia_pickle, read_torch_file
from ss_jax.stylegan2 import checkpoint
from ss_jax.stylegan2.checkpoint import load_checkpoint
from ss_jax.stylegan2.config import GeneratorConfig, style_layout


class _Evil:
  def __init__(self, func, *args):
    self.func, self.args = func, args

  def __reduce__(self):
    return self.func, self.args


def _convert(src, out):
  return subprocess.run(
    [sys.executable, "-m", "converters", str(src), str(out)], capture_output=True, text=True, timeout=300
  )


def test_malicious_pickle_is_refused_and_nothing_runs_or_is_written(tmp_path):
  marker = tmp_path / "pwned"
  src = tmp_path / "evil.pkl"
  src.write_bytes(pickle.dumps({"G_ema": _Evil(os.system, f"touch {marker}")}, protocol=4))
  out = tmp_path / "out"
  proc = _convert(src, out)
  assert proc.returncode == 1
  assert "system" in proc.stderr and "allow-list" in proc.stderr
  assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not a checkpoint", b"\x80\x04\x95"])
def test_garbage_files_give_one_line_errors(tmp_path, content):
  src = tmp_path / "bad.pkl"
  src.write_bytes(content)
  proc = _convert(src, tmp_path / "out")
  assert proc.returncode == 1
  assert proc.stderr.strip().count("\n") == 0 and str(src) in proc.stderr
  assert not (tmp_path / "out").exists()


def test_truncated_fixture_and_missing_file(fixtures_dir, tmp_path):
  data = (fixtures_dir / "stylegan2" / "n1" / "n1.pkl").read_bytes()
  src = tmp_path / "half.pkl"
  src.write_bytes(data[: len(data) // 2])
  proc = _convert(src, tmp_path / "out")
  assert proc.returncode == 1 and str(src) in proc.stderr
  proc = _convert(tmp_path / "nope.pkl", tmp_path / "out")
  assert proc.returncode == 1 and "not found" in proc.stderr


def test_missing_and_misshapen_tensors_are_named(fixtures_dir):
  path = fixtures_dir / "stylegan2" / "r1" / "r1.pt"
  sd = dict(read_torch_file(path)["g_ema"])
  cfg = GeneratorConfig(**rosinality.config_from_state_dict(sd, path))
  layout = style_layout(cfg)
  bad = dict(sd)
  del bad["convs.2.conv.modulation.bias"]
  with pytest.raises(CheckpointError, match=r"missing tensor 'convs\.2\.conv\.modulation\.bias'"):
    rosinality.params_from_state_dict(cfg, layout, bad, path)
  bad = dict(sd, **{"to_rgbs.1.bias": np.zeros((1, 4, 1, 1), np.float32)})
  with pytest.raises(CheckpointError, match=r"'to_rgbs\.1\.bias' has shape \(1, 4, 1, 1\), expected \(1, 3, 1, 1\)"):
    rosinality.params_from_state_dict(cfg, layout, bad, path)
  with pytest.raises(CheckpointError, match="not a rosinality generator"):
    rosinality.config_from_state_dict({"foo": np.zeros(1)}, path)


def test_nvidia_snapshot_without_generator(fixtures_dir):
  path = fixtures_dir / "stylegan2" / "n1" / "n1.pkl"
  snap = read_nvidia_pickle(path)
  with pytest.raises(CheckpointError, match="no 'G_ema'"):
    nvidia._pick_generator({"D": snap["D"]}, path)  # pylint: disable=protected-access
  G = snap["G_ema"]
  sd = dict(G.state_dict())
  sd["synthesis.b8.conv0.weight"] = sd["synthesis.b8.conv0.weight"][:, :5]
  cfg = GeneratorConfig(**nvidia.config_from_module(G, path))
  with pytest.raises(CheckpointError, match=r"synthesis\.b8\.conv0\.weight' has shape"):
    nvidia.params_from_state_dict(cfg, style_layout(cfg), sd, path)


def test_non_ema_generator_is_not_used(fixtures_dir):
  """The fixtures' G differs from G_ema: loading must pick G_ema (w_avg is shared)."""
  path = fixtures_dir / "stylegan2" / "n1" / "n1.pkl"
  g, info = load_checkpoint(path)
  assert info["network"] == "G_ema"
  snap = read_nvidia_pickle(path)
  np.testing.assert_array_equal(g.params["mapping"]["fc"][0]["b"], snap["G_ema"].state_dict()["mapping.fc0.bias"])


def test_rosinality_train_checkpoint_without_latent_avg_estimates_w_avg(fixtures_dir, monkeypatch):
  path = fixtures_dir / "stylegan2" / "r1" / "r1.pt"
  obj = read_torch_file(path)
  ref_w_avg = obj["latent_avg"]  # mean mapping output over 4096 z in the fixture
  train_ckpt = {"g": obj["g"], "d": obj["d"], "g_ema": obj["g_ema"], "args": None}
  monkeypatch.setattr(rosinality, "read_torch_file", lambda p: train_ckpt)
  monkeypatch.setattr(checkpoint, "W_AVG_SAMPLES", 20_000)
  g, info = load_checkpoint(path)
  assert "estimated" in info["w_avg"]
  err = np.abs(np.asarray(g.w_avg) - ref_w_avg).max() / np.abs(ref_w_avg).max()
  assert err < 0.05, err
