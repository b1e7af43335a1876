"""Attribute-specific channels: theta, ranking masks, planted channel, resampling curve, binary."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from ss_jax import GeneratorConfig, save_generator
from ss_jax.stylespace import attribute_channels as ac, stats, channels as stylespace
from ss_jax.stylegan2 import sampling
from ss_jax.stylegan2.config import style_layout

import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, channels=(16, 16, 8), mapping_layers=2)


def tiny_generator(seed=0, cfg=CFG):
  return tiny.tiny_generator(seed, cfg)


def styles(g, seeds):
  return sampling.styles_from_seeds(g, seeds, batch_size=64).astype(np.float64)  # one compiled shape


@pytest.fixture(scope="module")
def g():
  return tiny_generator()


@pytest.fixture(scope="module")
def population(g):
  """(mean, std) of 256 samples: numpy on concatenated styles (what population_stats returns)."""
  x = styles(g, range(256))
  return x.mean(0), x.std(0)


def test_theta_by_hand():
  layout = style_layout(CFG)
  c = stylespace.num_channels(layout)
  mean, std = np.zeros(c), np.ones(c)
  mean[1], std[1] = 1.0, 2.0
  s = np.zeros((3, c))
  s[:, 0] = [1, 2, 3]  # z = 1,2,3: |mean| 2, std sqrt(2/3)
  s[:, 1] = [1, 3, 5]  # z = 0,1,2: |mean| 1, std sqrt(2/3)
  s[:, 2] = [-4, -4, -4]  # all exemplars agree: std 0 -> inf
  r = ac.find_channels(s, mean, std, layout)
  np.testing.assert_allclose(r["theta"][:2], [2 / np.sqrt(2 / 3), 1 / np.sqrt(2 / 3)])
  assert r["theta"][2] == np.inf and r["theta"][3] == 0.0  # 0/0 -> 0
  assert r["names"][:3] == ["0_2", "0_0", "0_1"] and r["z_mean"][2] == -4
  torgb = [L for L in layout if L.kind == "torgb"]
  assert not set(r["ranking"]) & {L.offset + i for L in torgb for i in range(L.channels)}
  assert len(r["ranking"]) == len(stylespace.considered_indices(layout))
  r = ac.find_channels(s, mean, std, layout, include_torgb=True)
  assert len(r["ranking"]) == c


def test_planted_channel_is_ranked_first(g, population):
  mean, std = population
  planted = g.layout[3].offset + 5  # b8_conv1, channel 5
  ex = styles(g, range(1000, 1030))
  ex[:, planted] += 3 * std[planted]
  r = ac.find_channels(ex, mean, std, g.layout)
  assert r["ranking"][0] == planted and r["names"][0] == "3_5"
  r = ac.find_channels(ex, mean, std, g.layout, restrict_to=["3_4", "6_0", "0_1"])
  assert sorted(r["names"]) == ["0_1", "3_4", "6_0"]
  trgb = g.layout[-1].offset + 2  # a toRGB channel: only found when included
  ex2 = styles(g, range(1000, 1030))
  ex2[:, trgb] += 3 * std[trgb]
  assert trgb not in ac.find_channels(ex2, mean, std, g.layout)["ranking"]
  assert ac.find_channels(ex2, mean, std, g.layout, include_torgb=True)["ranking"][0] == trgb


def test_clear_errors(g, population):
  mean, std = population
  ex = np.ones((3, g.num_style_channels))
  with pytest.raises(ValueError, match="empty exemplar set"):
    ac.find_channels(ex[:0], mean, std, g.layout)
  with pytest.raises(ValueError, match="at least 2"):
    ac.find_channels(ex[:1], mean, std, g.layout)
  with pytest.raises(ValueError, match="style channels"):
    ac.find_channels(ex, mean[:-1], std[:-1], g.layout)
  with pytest.raises(ValueError, match="toRGB"):
    ac.find_channels(ex, mean, std, g.layout, restrict_to=[g.layout[1].offset])
  with pytest.raises(ValueError, match="bad channel name"):
    ac.find_channels(ex, mean, std, g.layout, restrict_to="3x5")
  with pytest.raises(ValueError, match="unknown attribute index 3"):
    ac.top_by_attribute(np.zeros((4, 3)), 3, 2)


def test_resampling_curve_shape_and_determinism(g, population):
  mean, std = population
  planted = g.layout[2].offset + 1
  ex = styles(g, range(2000, 2012))
  ex[:, planted] += 1.5 * std[planted]
  cur = ac.resampling_curve(ex, mean, std, g.layout, num_draws=25, seed=7)
  assert list(cur["sizes"]) == list(range(2, 13)) and cur["top"].shape == (11, 25)
  assert cur["reference"] == ac.find_channels(ex, mean, std, g.layout)["ranking"][0]
  assert cur["agreement"][-1] == 1.0 and np.all((0 <= cur["agreement"]) & (cur["agreement"] <= 1))
  again = ac.resampling_curve(ex, mean, std, g.layout, num_draws=25, seed=7)
  np.testing.assert_array_equal(again["top"], cur["top"])
  grid = ac.resampling_curve(ex, mean, std, g.layout, sizes=[2, 6, 12], num_draws=5)
  assert grid["top"].shape == (3, 5)
  with pytest.raises(ValueError, match="2..12"):
    ac.resampling_curve(ex, mean, std, g.layout, sizes=[1, 13])
  assert ac.default_sizes(1000)[-1] == 1000 and len(ac.default_sizes(1000)) <= 20
  img = ac.plot_curve(cur["sizes"], cur["agreement"], "t")
  assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_exemplars_from_codes_and_bank(g, tmp_path):
  ws = np.asarray(jax.jit(lambda g, z: g.mapping(z))(g, np.random.RandomState(0).randn(3, 16)))
  want = np.asarray(jax.jit(lambda g, ws: jax.numpy.concatenate(g.styles(ws), axis=1))(g, ws))
  np.savez(tmp_path / "w.npz", w=ws[:, 0])
  np.savez(tmp_path / "ws.npz", ws=ws)
  np.savez(tmp_path / "bad.npz", z=ws)
  for name in ("w.npz", "ws.npz"):
    np.testing.assert_allclose(ac.styles_from_codes(g, tmp_path / name), want, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="expected key"):
    ac.styles_from_codes(g, tmp_path / "bad.npz")
  bright = lambda x: np.stack([np.asarray(x).mean((1, 2, 3)), -np.asarray(x).mean((1, 2, 3))], 1)
  sel = ac.select_exemplars(g, bright, 0, 3, range(10), batch_size=2)  # N=2 renders, as test_manipulate
  from ss_jax.stylespace import manipulate

  bank = sampling.styles_from_seeds(g, range(10), batch_size=2)  # shapes as compiled by select_exemplars
  means = manipulate.render(g, bank, batch_size=2).mean((1, 2, 3))
  assert list(sel["seeds"]) == list(np.argsort(-means)[:3])
  assert sel["styles"].shape == (3, g.num_style_channels)
  with pytest.raises(ValueError, match="unknown attribute index 2"):
    ac.select_exemplars(g, bright, 2, 3, range(10), batch_size=2)


def run_binary(*args):
  return subprocess.run(
    [sys.executable, "-m", "experiments.attribute_channels", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_binary_end_to_end(g, population, tmp_path):
  save_generator(g, tmp_path / "gen")
  stats.save(tmp_path / "stats.npz", {"mean": population[0], "std": population[1], "count": 256}, g.layout)
  np.savez(tmp_path / "empty.npz", w=np.zeros((0, 16), np.float32))
  base = [f"--checkpoint={tmp_path / 'gen'}", f"--stats={tmp_path / 'stats.npz'}"]
  p = run_binary(*base, "--seeds=0-7", "--draws=10", f"--workdir={tmp_path / 'out'}")
  assert p.returncode == 0, p.stderr[-2000:]
  ranking = json.loads((tmp_path / "out" / "ranking.json").read_text())
  assert ranking["num_exemplars"] == 8 and len(ranking["top"]) == 50
  curve = json.loads((tmp_path / "out" / "resampling_curve.json").read_text())
  assert curve["sizes"] == list(range(2, 9)) and curve["agreement"][-1] == 1.0
  assert (tmp_path / "out" / "resampling_curve.png").is_file()
  assert (tmp_path / "out" / "attribute_channels.npz").is_file()
  p = run_binary(*base, f"--codes={tmp_path / 'empty.npz'}", f"--workdir={tmp_path / 'e'}")
  assert p.returncode != 0 and "empty exemplar set" in p.stderr.strip().splitlines()[-1]
