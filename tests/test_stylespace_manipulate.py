"""Channel edits in S: alpha sweeps, locality of edits, labelled grids, binary."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ss_jax import GeneratorConfig, save_generator
from ss_jax.runtime import images
from ss_jax.stylespace import manipulate, stats
from ss_jax.stylegan2 import sampling

import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, channels=(16, 16, 8), mapping_layers=2)


def tiny_generator(seed=0, cfg=CFG):
  return tiny.tiny_generator(seed, cfg)


@pytest.fixture(scope="module")
def setup():
  g = tiny_generator()
  pop = sampling.styles_from_seeds(g, range(64), batch_size=64)
  # Every edit below uses 2 images x 3 alphas, so the renderer compiles once per shape.
  return g, pop[:2], pop.astype(np.float64).std(0)


def test_alpha_zero_column_is_the_unedited_image(setup):
  g, s, std = setup
  x = manipulate.edited_images(g, s, "3_5,0_1", [-5, 0, 5], std)
  assert x.shape == (3, 2, 16, 16, 3) and x.dtype == np.float32
  np.testing.assert_allclose(x[1], manipulate.render(g, s), atol=1e-5)
  assert np.abs(x[0] - x[1]).max() > 1e-3 and np.abs(x[2] - x[1]).max() > 1e-3


def test_edit_touches_only_the_chosen_channels(setup):
  g, s, std = setup
  d = manipulate.direction(g.layout, ["3_5", "6_2"], std)
  chosen = [g.layout[3].offset + 5, g.layout[6].offset + 2]
  assert np.flatnonzero(d).tolist() == chosen and np.allclose(d[chosen], std[chosen])
  e = np.asarray(manipulate.apply_edit(s, d, [2.0]))[0]
  np.testing.assert_array_equal(np.delete(e, chosen, 1), np.delete(s, chosen, 1))
  np.testing.assert_allclose(e[:, chosen] - s[:, chosen], np.broadcast_to(2 * std[chosen], (2, 2)), rtol=1e-5)


def test_last_torgb_edit_is_linear_in_alpha(setup):
  # The last toRGB layer is a linear function of its style: pixels move, alpha 0 changes nothing.
  g, s, std = setup
  last = g.layout[-1]
  assert last.kind == "torgb"
  x = manipulate.edited_images(g, s, [last.offset + 3], [0, 5, 10], std)
  base = manipulate.render(g, s)
  np.testing.assert_allclose(x[0], base, atol=1e-5)
  assert np.abs(x[1] - base).max() > 1e-3
  np.testing.assert_allclose(x[2] - base, 2 * (x[1] - base), atol=1e-4)


def test_grid_layout_and_labels(setup):
  g, s, std = setup
  alphas = [-5, 0, 5]
  grid = manipulate.manipulation_grid(g, s, "3_5,6_2", alphas, std, pad=2)
  assert grid.dtype == np.uint8 and grid.shape[2] == 3
  rows, h, pad = 4, 16, 2  # 2 channels x 2 images
  assert grid.shape[0] > rows * (h + pad) + pad and grid.shape[1] > 3 * (h + pad) + pad
  # The bottom-right cell is image 1 edited along 6_2 by alpha=+5.
  last = images.to_uint8(manipulate.edited_images(g, s, "6_2", alphas, std))[2, 1]
  np.testing.assert_array_equal(grid[-pad - h : -pad, -pad - h : -pad], last)
  assert (grid[:, :10] < 128).any()  # row labels drawn in the left margin
  big = manipulate.manipulation_grid(g, s, "3_5,6_2", alphas, std, joint=True, min_cell=32)
  assert big.shape[0] > 2 * (32 + pad) + pad and big.shape[1] > 3 * (32 + pad) + pad
  cell = big[-pad - 32 : -pad, -pad - 32 : -pad]  # nearest-neighbour x2: pixels come in 2x2 blocks
  np.testing.assert_array_equal(cell[::2, ::2], cell[1::2, 1::2])


def test_errors(setup):
  g, s, std = setup
  with pytest.raises(ValueError, match="bad channel name"):
    manipulate.edited_images(g, s, "6-202", [1], std)
  with pytest.raises(ValueError, match="out of range"):
    manipulate.edited_images(g, s, "3_99", [1], std)
  with pytest.raises(ValueError, match="more than once"):
    manipulate.resolve_channels(g.layout, "3_5,3_5")
  with pytest.raises(ValueError, match="style channels"):
    manipulate.edited_images(g, s, "3_5", [1], std[:-1])
  with pytest.raises(ValueError, match="bad alphas"):
    manipulate.parse_alphas("-10,x")
  assert manipulate.parse_alphas("-10,-5,0,5,10") == (-10, -5, 0, 5, 10)


def test_batch_job_equals_grid_and_resumes_on_other_devices(setup, tmp_path):
  import jax

  g, _, std = setup
  seeds, alphas = range(3), [-5, 0, 5]
  job = manipulate.make_job(tmp_path, g, seeds, "3_5,6_2", alphas, std, images_per_shard=2)
  assert job.dir.name.startswith("edits_") and job.num_shards == 2
  assert manipulate.run_job(job, g, batch_size=2) == 3  # 4 devices
  d = job.read(0)
  assert d["images"].shape == (2, 2, 3, 16, 16, 3) and d["images"].dtype == np.uint8  # (n, G, A, H, W, C)
  s = sampling.styles_from_seeds(g, seeds, 0.7)
  ref = manipulate.manipulation_grid(g, s, "3_5,6_2", alphas, std)
  grid = manipulate.job_grid(job)
  assert grid.shape == ref.shape and np.abs(grid.astype(int) - ref).max() <= 1
  first = job.read(0)["images"]
  os.remove(job.shard_path(0))
  one = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  again = manipulate.make_job(tmp_path, g, seeds, "3_5,6_2", alphas, std, images_per_shard=2)
  assert again.dir == job.dir and again.pending() == [0]
  assert manipulate.run_job(again, g, batch_size=2, mesh=one) == 2
  assert np.abs(again.read(0)["images"].astype(int) - first).max() <= 1
  joint = manipulate.make_job(tmp_path, g, seeds, "3_5,6_2", alphas, std, joint=True, images_per_shard=2)
  assert joint.dir != job.dir and joint.spec["groups"] == [
    [[g.layout[3].offset + 5, g.layout[6].offset + 2], "3_5+6_2"]
  ]


def run_binary(*args):
  return subprocess.run(
    [sys.executable, "-m", "experiments.manipulate", *args], cwd=REPO, capture_output=True, text=True, timeout=120
  )


def test_binary_end_to_end(setup, tmp_path):
  g, _, std = setup
  save_generator(g, tmp_path / "gen")
  stats.save(tmp_path / "stats.npz", {"mean": np.zeros_like(std), "std": std, "count": 64}, g.layout)
  base = [
    f"--checkpoint={tmp_path / 'gen'}",
    f"--stats={tmp_path / 'stats.npz'}",
    "--seeds=0-1",
    f"--outdir={tmp_path / 'out'}",
  ]
  p = run_binary(*base, "--channels=3_5,6_2", "--alphas=-10,0,10")
  assert p.returncode == 0, p.stderr[-2000:]
  meta = json.loads((tmp_path / "out" / "manipulation.json").read_text())
  assert meta["rows"] == ["3_5", "3_5", "6_2", "6_2"] and meta["alphas"] == [-10, 0, 10]
  assert (tmp_path / "out" / "grid.png").is_file()
  p = run_binary(*base, "--channels=3_99")
  assert p.returncode != 0 and p.stderr.strip().splitlines()[-1].startswith("error: channel 99 out of range")
