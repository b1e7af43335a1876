"""DCI sampling of Z, W, W+ and S: codes, attribute logits, resume, evaluation, outputs, binary."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ss_jax.dci import controls as dci_controls
from ss_jax.dci import sampling as dci_sampling

from ss_jax.dci import results
from ss_jax.runtime import jobs
from ss_jax.stylegan2 import sampling
from ss_jax import save_generator

import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLANTED = (3, 40, 100)  # flat S channels of three different style layers


def tiny_generator(seed=0):
  return tiny.tiny_generator(seed)


@pytest.fixture(scope="module")
def g():
  return tiny_generator()


def _colour_logits(x):
  """Stand-in classifier (works on numpy and jax): 3 image statistics, ~0-centred."""
  return jnp.stack(
    [
      x[..., 0].mean((1, 2)),
      x[..., 1].mean((1, 2)) - x[..., 2].mean((1, 2)),
      x[:, :8, :, 2].mean((1, 2)) - x[:, 8:, :, 2].mean((1, 2)),
    ],
    axis=1,
  )


TRACEABLE = dci_sampling.AttributeFunction(
  _colour_logits, ("red", "green_blue", "top_bottom"), "colour", traceable=True
)
HOST = dci_sampling.AttributeFunction(lambda x: np.asarray(_colour_logits(x)), TRACEABLE.names, "colour")


def _planted_logits(s):
  """Logits = a few S channels minus their median: S should score near-perfect D and C."""
  x = s[:, list(PLANTED)].astype(np.float64)
  return (x - np.median(x, axis=0)).astype(np.float32)


def test_codes_follow_the_generator_and_do_not_depend_on_devices(g):
  seeds = range(5, 19)
  one = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  a = dci_sampling.sample_codes(g, seeds, batch_size=6)  # 6 pads to 8 rows on 4 devices
  b = dci_sampling.sample_codes(g, seeds, batch_size=4, mesh=one)
  for k in ("z", "w", "s"):
    np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-6)
  z = sampling.z_from_seeds(list(seeds), g.config.z_dim)
  np.testing.assert_array_equal(a["z"], z)
  np.testing.assert_allclose(a["w"], np.asarray(g.mapping(z))[:, 0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(a["s"], sampling.styles_from_seeds(g, seeds, psi=1.0), rtol=1e-5, atol=1e-5)
  assert a["s"].shape == (14, g.num_style_channels) and a["s"].dtype == np.float32


def test_traceable_and_host_attribute_functions_agree(g):
  s = dci_sampling.sample_codes(g, range(10), batch_size=8)["s"]
  a = dci_sampling.attribute_logits(g, s, TRACEABLE, batch_size=6)
  b = dci_sampling.attribute_logits(g, s, HOST, batch_size=6)
  x = np.asarray(g.synthesis(g.styles(g.mapping(sampling.z_from_seeds(range(10), g.config.z_dim)))))
  assert a.shape == (10, 3)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(a, np.asarray(_colour_logits(x)), rtol=1e-4, atol=1e-5)


def _read(sjobs):
  out = {k: dci_sampling.read_array(sjobs.codes, k) for k in ("z", "w", "s")}
  out["logits"] = dci_sampling.read_array(sjobs.logits, "logits")
  return out


def test_resume_after_max_shards_equals_uninterrupted_run(g, tmp_path):
  kw = dict(seed=3, samples_per_shard=10)
  full = dci_sampling.make_jobs(tmp_path / "full", g, 35, TRACEABLE, **kw)
  assert dci_sampling.run_sampling(g, full, TRACEABLE, batch_size=8) == 35 and full.complete()
  part = dci_sampling.make_jobs(tmp_path / "part", g, 35, TRACEABLE, **kw)
  assert dci_sampling.run_sampling(g, part, TRACEABLE, batch_size=8, max_shards=2) == 20  # "killed"
  assert not part.complete() and part.done_samples() == 20
  os.remove(part.logits.shard_path(1))  # codes of shard 1 on disk, its logits lost
  with pytest.raises(RuntimeError, match="not done"):
    dci_sampling.read_array(part.codes, "s")
  part = dci_sampling.make_jobs(tmp_path / "part", g, 35, TRACEABLE, **kw)  # the rerun, on 1 device
  one = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  assert dci_sampling.run_sampling(g, part, TRACEABLE, batch_size=8, mesh=one) == 25  # shard 1's logits + 2, 3
  ref, got = _read(full), _read(part)
  for k in ref:
    np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(got["z"], ref["z"])
  assert got["w"].shape == (35, 16) and got["logits"].shape == (35, 3)
  with pytest.raises(jobs.SettingsMismatch, match="psi"):
    dci_sampling.make_jobs(tmp_path / "part", g, 35, TRACEABLE, psi=0.7, **kw)
  with pytest.raises(jobs.SettingsMismatch, match="attribute_fn"):
    other = dci_sampling.AttributeFunction(HOST.fn, None, "other")
    dci_sampling.make_jobs(tmp_path / "part", g, 35, other, **kw)
  with pytest.raises(jobs.SettingsMismatch, match="model"):
    dci_sampling.make_jobs(tmp_path / "part", tiny_generator(seed=1), 35, TRACEABLE, **kw)
  codes_only = dci_sampling.make_jobs(tmp_path / "part", g, 35, None, **kw)  # codes are reusable
  assert dci_sampling.run_sampling(g, codes_only) == 0 and codes_only.complete()


def test_spaces_and_planted_s_logits(g, tmp_path):
  sjobs = dci_sampling.make_jobs(tmp_path, g, 512, None, samples_per_shard=200)
  dci_sampling.run_sampling(g, sjobs, batch_size=128)
  num_ws, w_dim = g.config.num_ws, g.config.w_dim
  w = dci_sampling.space_codes(sjobs.codes, "w", num_ws)
  wplus = dci_sampling.space_codes(sjobs.codes, "wplus", num_ws)
  assert wplus.shape == (512, num_ws * w_dim)
  np.testing.assert_array_equal(wplus[:, 2 * w_dim : 3 * w_dim], w)  # row r, dim d -> r * w_dim + d
  logits = _planted_logits(dci_sampling.read_array(sjobs.codes, "s"))
  # Wide percentiles: 512 samples leave ~10 per attribute at the official 2 / 98.
  res = results.evaluate(
    sjobs.codes,
    logits,
    ["w", "wplus", "s", "w_expand", "s_rotated"],
    num_ws,
    "lasso",
    attribute_names=["a", "b", "c"],
    low_pct=30,
    high_pct=70,
    layout=g.layout,
    control_seed=5,
  )
  assert list(res) == ["W", "W+", "S", "W expanded (random)", "S rotated (per layer)"]
  rot = dci_sampling.space_codes(sjobs.codes, "s_rotated", num_ws, g.layout, 5)
  np.testing.assert_array_equal(
    rot, dci_controls.rotate_per_layer(dci_sampling.read_array(sjobs.codes, "s"), [L.channels for L in g.layout], 5)
  )
  assert res["W expanded (random)"]["num_codes"] == g.num_style_channels
  # The planted factors are S channels: rotating the layers destroys the alignment (C falls).
  assert res["S rotated (per layer)"]["C"] < res["S"]["C"] - 0.2
  assert res["S"]["D"] > 0.8 and res["S"]["C"] > 0.8 and res["S"]["I"] > 0.95
  assert res["S"]["D"] > res["W"]["D"] + 0.2 and res["S"]["C"] > res["W"]["C"] + 0.2
  np.testing.assert_allclose(res["W+"]["D"], res["W"]["D"], atol=1e-3)  # identical copies of w
  assert res["W+"]["C"] < res["W"]["C"]  # ... spread the same weights over num_ws copies
  top = np.argmax(res["S"]["importance"], axis=0)
  np.testing.assert_array_equal(top, PLANTED)


def test_outputs_and_grouped_heatmaps(g, tmp_path, monkeypatch):
  sjobs = dci_sampling.make_jobs(tmp_path / "w", g, 256, None)
  dci_sampling.run_sampling(g, sjobs, batch_size=128)
  logits = _planted_logits(dci_sampling.read_array(sjobs.codes, "s"))
  res = results.evaluate(
    sjobs.codes,
    logits,
    ["z", "wplus", "s"],
    g.config.num_ws,
    attribute_names=["a", "b", "c"],
    low_pct=30,
    high_pct=70,
    num_steps=100,
  )
  monkeypatch.setattr(results, "MAX_FULL_CODES", 80)  # W+ (96) and S (112) -> groups + top-k
  drawn = results.write_outputs(
    tmp_path / "out",
    res,
    g.layout,
    g.config.num_ws,
    g.config.w_dim,
    {"n": 256},
    {"seconds_per_10k_samples": 1.0},
    ["a", "b", "c", "d"],
  )
  assert sorted(drawn) == [
    "importance_s.png",
    "importance_s_top.png",
    "importance_wplus.png",
    "importance_wplus_top.png",
    "importance_z.png",
  ]
  from PIL import Image

  for name in drawn:
    im = np.asarray(Image.open(tmp_path / "out" / name))
    assert im.ndim == 3 and im.shape[0] > 3 * 12 and im.shape[1] > 20
  d = json.loads((tmp_path / "out" / "dci.json").read_text())
  assert set(d["spaces"]) == {"Z", "W+", "S"} and d["spaces"]["S"]["dropped_attributes"] == ["d"]
  assert d["spaces"]["S"]["per_attribute"]["a"]["top_codes"][0][0] == "0_3"  # flat 3 = layer 0
  md = (tmp_path / "out" / "dci.md").read_text()
  assert md.splitlines()[2].startswith("| Z |") and "| S |" in md
  npz = jobs.load_npz(tmp_path / "out" / "importance.npz")
  assert npz["importance_s"].shape == (g.num_style_channels, 3)
  assert list(npz["attributes_z"]) == ["a", "b", "c"]


def test_load_logits_checks_shape_and_values(tmp_path):
  np.save(tmp_path / "ok.npy", np.ones((8, 2)))
  assert dci_sampling.load_logits(tmp_path / "ok.npy", 8).dtype == np.float32
  with pytest.raises(ValueError, match=r"num_samples=9.*got \(8, 2\)"):
    dci_sampling.load_logits(tmp_path / "ok.npy", 9)
  np.save(tmp_path / "flat.npy", np.ones(8))
  with pytest.raises(ValueError, match="shape"):
    dci_sampling.load_logits(tmp_path / "flat.npy", 8)
  np.save(tmp_path / "nan.npy", np.full((8, 2), np.nan))
  with pytest.raises(ValueError, match="finite"):
    dci_sampling.load_logits(tmp_path / "nan.npy", 8)
  np.save(tmp_path / "obj.npy", np.array([{}, 1], dtype=object), allow_pickle=True)
  with pytest.raises(ValueError, match="readable"):
    dci_sampling.load_logits(tmp_path / "obj.npy", 2)
  with pytest.raises(FileNotFoundError):
    dci_sampling.load_logits(tmp_path / "missing.npy", 8)


def _run_binary(*args):
  return subprocess.run(
    [sys.executable, "-m", "experiments.dci", *args], cwd=REPO, capture_output=True, text=True, timeout=300
  )


def test_binary_end_to_end_with_logits_file(g, tmp_path):
  save_generator(g, tmp_path / "gen")
  s = sampling.styles_from_seeds(g, range(7, 7 + 256), psi=1.0)
  np.save(tmp_path / "logits.npy", _planted_logits(s))
  args = [
    f"--checkpoint={tmp_path / 'gen'}",
    "--num_samples=256",
    "--seed=7",
    "--batch_size=64",
    "--samples_per_shard=100",
    f"--logits={tmp_path / 'logits.npy'}",
    "--attribute_names=a,b,c",
    f"--workdir={tmp_path / 'w'}",
  ]
  p = _run_binary(*args)
  assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
  assert "s per 10k samples" in p.stdout and "| S |" in p.stdout
  w = tmp_path / "w"
  d = json.loads((w / "dci.json").read_text())
  assert set(d["spaces"]) == {"Z", "W", "W+", "S", *dci_controls.SPACES.values()}
  assert d["settings"]["psi"] == 1.0 and d["settings"]["control_seed"] == 0
  assert d["timing"]["seconds_per_10k_samples"] > 0 and d["settings"]["logits_sha1"]
  for name in (
    "dci.md",
    "importance.npz",
    "importance_z.png",
    "importance_w.png",
    "importance_wplus.png",
    "importance_s.png",
    "importance_s_rotated.png",
    "importance_w_expand.png",
  ):
    assert (w / name).is_file(), name
  np.testing.assert_allclose(dci_sampling.read_array(_codes_job(w), "s"), s, rtol=1e-5, atol=1e-5)
  np.save(tmp_path / "short.npy", np.zeros((255, 3)))
  p = _run_binary(*args[:5], f"--logits={tmp_path / 'short.npy'}", f"--workdir={tmp_path / 'w2'}")
  assert p.returncode != 0 and p.stderr.strip().splitlines()[-1].startswith("error:")
  assert "num_samples=256" in p.stderr


def _codes_job(workdir):
  spec = json.loads((workdir / dci_sampling.CODES_JOB / "spec.json").read_text())
  spec.pop("num_shards")
  return jobs.ShardedJob(workdir, dci_sampling.CODES_JOB, spec, 3)
