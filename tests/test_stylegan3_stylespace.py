"""StyleSpace analysis on a StyleGAN3 generator, unchanged: statistics, gradient maps (forward and
reverse agree), attribute channels, manipulation, and the gradient-map -> detection -> report binaries
on a converted tiny StyleGAN3 directory (gradient maps, binaries and the input-style check @slow)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ss_jax.stylespace import attribute_channels, manipulate, stats, channels as stylespace
from ss_jax.stylegan2 import sampling
from ss_jax.stylespace.gradmaps import api as gradmaps
from ss_jax import save_generator
from ss_jax.stylegan3 import StyleGAN3Config, StyleGAN3Generator


def tiny_sg3():
  """16 px StyleGAN3-T with 4 layers (+ toRGB), 8 channels; a learned input affine so that w moves it."""
  cfg = StyleGAN3Config(
    z_dim=8, w_dim=8, img_resolution=16, channel_base=128, channel_max=8, num_layers=4, num_critical=1, margin_size=4
  )
  g = StyleGAN3Generator.random(cfg, jax.random.PRNGKey(3))
  p = jax.tree.map(lambda x: x, g.params)
  p["synthesis"]["input"]["affine_w"] = 0.2 * jax.random.normal(jax.random.PRNGKey(4), (8, 4))
  return StyleGAN3Generator(p, g.buffers, cfg)


def test_stats_manipulation_and_attribute_channels():
  g = tiny_sg3()
  assert [L.kind for L in g.layout] == ["input", "conv", "conv", "conv", "conv", "torgb"]
  flat = sampling.styles_from_seeds(g, range(12), psi=0.7, batch_size=4)
  assert flat.shape == (12, g.num_style_channels) and np.isfinite(flat).all()
  res = stats.population_stats(g, 16, psi=0.7, batch_size=8)
  assert res["mean"].shape == (g.num_style_channels,) and (res["std"][4:] > 0).all()
  # A one-channel edit moves the image, and only the edited channel of S.
  grid = manipulate.manipulation_grid(g, flat[:2], "2_3", [-5, 0, 5], res["std"])
  assert grid.ndim == 3 and grid.shape[2] == 3
  imgs = np.asarray(
    manipulate.edited_images(
      g, flat[:2], stylespace.parse_names(g.layout, "2_3"), [0.0, 8.0, -8.0], res["std"]
    )  # the grid's shape: one compile
  )
  assert np.abs(imgs[1] - imgs[0]).max() > 1e-3
  # Attribute channels: exemplars shifted along one conv channel are found first.
  ex = flat[:8].copy()
  target = stylespace.parse_name(g.layout, "3_5")
  ex[:, target] = res["mean"][target] + 4 * res["std"][target]
  found = attribute_channels.find_channels(ex, res["mean"], res["std"], g.layout)
  top = attribute_channels.ranking_table(found, g.layout, top_k=1)
  assert json.dumps(top).count("3_5") >= 1
  assert not stylespace.kind_mask(g.layout)[:4].any()  # the input's 4 values are never candidates


@pytest.mark.slow
def test_forward_and_reverse_gradient_maps_agree():
  g = tiny_sg3()
  s = g.styles(g.mapping(jax.random.normal(jax.random.PRNGKey(0), (2, 8))))
  fwd = gradmaps.jacobian(g, s, resolution=8, include_torgb=True, method="forward")
  rev = gradmaps.jacobian(g, s, resolution=8, include_torgb=True, method="reverse", chunk_size=192)
  n_conv = sum(L.channels for L in g.layout if L.kind == "conv")
  assert fwd.shape == (2, n_conv + g.layout[-1].channels, 3, 8, 8)
  np.testing.assert_allclose(fwd, rev, atol=1e-5)
  # Against a finite difference of the pooled image (one channel, float32 central difference).
  c = 5

  def pooled(v):
    s2 = list(s)
    s2[1] = s2[1].at[:, c].set(v)
    img = g.synthesis(s2)
    return img.reshape(2, 8, 2, 8, 2, 3).mean(axis=(2, 4)).transpose(0, 3, 1, 2)

  h = 1e-2
  fd = (pooled(s[1][:, c] + h) - pooled(s[1][:, c] - h)) / (2 * h)
  np.testing.assert_allclose(fwd[:, c], fd, atol=2e-3)


@pytest.mark.slow
def test_binaries_end_to_end_on_stylegan3(tmp_path):
  from test_stylespace_report import _bin, check_html, quadrants  # noqa: F401 (segmenter used by name)

  g = tiny_sg3()
  save_generator(g, tmp_path / "ckpt")
  rng = np.random.RandomState(0)
  c = g.num_style_channels
  stats.save(tmp_path / "stats.npz", {"mean": rng.rand(c), "std": rng.rand(c) + 0.5, "count": 10}, g.layout)
  wd = str(tmp_path / "wd")
  _bin(
    "gradient_maps",
    f"--checkpoint={tmp_path / 'ckpt'}",
    "--seeds=0-4",
    "--resolution=8",
    f"--workdir={wd}",
    "--images_per_shard=3",
  )
  shard = np.load(tmp_path / "wd/gradmaps/shard_00001.npz")
  assert shard["maps"].shape == (2, 32, 8, 8)
  _bin(
    "detect_local",
    f"--workdir={wd}",
    "--segmenter=test_stylespace_report:quadrants",
    "--categories=ffhq",
    "--threshold=0.3",
    "--margin=0.1",
  )
  verified = json.loads((tmp_path / "wd/local/verified.json").read_text())  # the default verification step
  assert verified["categories"] and all("verified" in c and "rejected" in c for c in verified["categories"])
  out = tmp_path / "report"
  _bin(
    "report",
    f"--workdir={wd}",
    f"--stats={tmp_path / 'stats.npz'}",
    f"--outdir={out}",
    "--channels=2_1,1_3",
    "--num_images=2",
  )
  p = check_html(out / "index.html")
  assert "maps/2_1.png" in p.srcs and "strips/1_3.png" in p.srcs


@pytest.mark.slow
def test_input_style_edit_equals_a_rigid_input_transform():
  """Editing the input style's 4 values = composing a rotation + translation into input_transform."""
  g = tiny_sg3()
  s = list(g.styles(g.mapping(jax.random.normal(jax.random.PRNGKey(2), (2, 8)))))
  a = np.deg2rad(20.0)
  user = np.linalg.inv(np.array([[np.cos(a), np.sin(a), 0.1], [-np.sin(a), np.cos(a), -0.05], [0, 0, 1]]))
  s0 = np.asarray(s[0], np.float64)
  edited = []
  for t in s0:
    t = t / np.hypot(t[0], t[1])
    m = np.array([[t[0], -t[1], 0], [t[1], t[0], 0], [0, 0, 1]]) @ np.array([[1, 0, -t[2]], [0, 1, -t[3]], [0, 0, 1]])
    m = m @ user  # what the input layer composes: learned rotation, learned translation, user transform
    r, b = m[:2, :2], m[:2, 2]
    edited.append(np.concatenate([[r[0, 0], r[1, 0]], -r.T @ b]))
  via_transform = g.synthesis(s, input_transform=user.astype(np.float32))
  s[0] = jnp.asarray(np.array(edited, np.float32))
  via_style = g.synthesis(s)
  assert (
    float(
      jnp.abs(via_transform - g.synthesis(g.styles(g.mapping(jax.random.normal(jax.random.PRNGKey(2), (2, 8)))))).max()
    )
    > 1e-3
  )  # the transform does move the image
  np.testing.assert_allclose(via_style, via_transform, atol=1e-5)
