"""Gradient maps: every method against jacrev, finite differences, the PyTorch references, sharding."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ss_jax.stylegan2 import layers as layers_lib
from ss_jax.stylegan2.generator import Generator, GeneratorConfig, init_params
from ss_jax.stylespace.gradmaps import api as gradmaps, dense as jacobian_modes
from ss_jax.stylespace.gradmaps import planning

METHODS = ("forward", "reverse", "local")


@functools.lru_cache(maxsize=None)
def _tiny_cached(items):
  cfg = GeneratorConfig(**dict(items))
  rng = np.random.RandomState(3)
  # Random values in the initialiser's structure (jitting the initialiser itself takes
  # ~15 s to compile); non-zero biases and noise strengths exercise every term.
  fill = {
    "affine_b": lambda shape: 1.0 + 0.2 * rng.randn(*shape),
    "bias": lambda shape: 0.2 * rng.randn(*shape),
    "noise_strength": lambda shape: np.full(shape, 0.3),
  }

  def leaf(path, a):
    name = getattr(path[-1], "key", None)
    return jnp.asarray(fill.get(name, lambda shape: rng.randn(*shape))(a.shape), jnp.float32)

  params, buffers = jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0)))
  g = Generator(jax.tree_util.tree_map_with_path(leaf, params), jax.tree_util.tree_map_with_path(leaf, buffers), cfg)
  s = tuple(jnp.asarray(1.0 + 0.5 * rng.randn(2, L.channels), jnp.float32) for L in g.layout)
  return g, s


def _tiny(**kw):
  """A random 8 px generator (8, 4 channels) and styles of 2 images (small: XLA compiles dominate)."""
  base = dict(z_dim=8, w_dim=8, img_resolution=8, channels=(8, 4), mapping_layers=2)
  base.update(kw)
  return _tiny_cached(tuple(sorted(base.items())))


def _jacrev_reference(g, s, res, include_torgb):
  """J from jax.jacrev of the generator's own synthesis, (N, C, img_c, P, P)."""
  layers = gradmaps.considered_layers(g.layout, include_torgb)
  out = []
  for i in range(s[0].shape[0]):
    si = [v[i : i + 1] for v in s]

    def f(sc):
      s2 = list(si)
      for m, v in zip(layers, sc):
        s2[m] = v[None]
      return jacobian_modes._pool(g.synthesis(s2), res)[0]

    jac = jax.jit(jax.jacrev(f))(tuple(si[m][0] for m in layers))
    out.append(jnp.concatenate([jnp.moveaxis(j, -1, 0) for j in jac], axis=0))
  return np.stack(out)


def _maps(j):
  return np.abs(j).mean(axis=2)


def test_stepwise_render_matches_generator():
  g, s = _tiny(architecture="resnet", conv_clamp=0.5)
  ours = jax.jit(lambda g, s: layers_lib._render(g, s)[1])(g, s)
  np.testing.assert_allclose(ours, jax.jit(lambda g, s: g.synthesis(s))(g, s), atol=2e-6)


def test_all_methods_match_jacrev():
  g, s = _tiny(img_resolution=16, channels=(8, 8, 4))
  ref = _jacrev_reference(g, s, 32, True)  # 16 px image, R = 32: no pooling, P = 16
  assert ref.shape == (2, 56, 3, 16, 16)
  for method in METHODS:  # tangent chunks of 3 do not divide the layers' 8 / 4 channels
    j = gradmaps.jacobian(g, s, include_torgb=True, method=method, chunk_size=3 if method != "reverse" else 500)
    np.testing.assert_allclose(j, ref, atol=2e-5, err_msg=method)


def test_pooling_and_other_architectures():
  # resnet (shortcut on crops), rosinality demodulation, clamping: pool 2, cut at 4 px, 2x2 tiles.
  g, s = _tiny(architecture="resnet", conv_clamp=0.8, flavour="rosinality")
  ref = _jacrev_reference(g, s, 4, True)
  pl = planning.plan(g.config, 4, True, method="local", cut_resolution=4, tile=2)
  assert g.layout[pl.cut].name == "b8_conv0"
  np.testing.assert_allclose(gradmaps.jacobian(g, s, resolution=4, include_torgb=True, method=pl), ref, atol=2e-5)
  # orig (one toRGB), pool 4, conv styles only, forward mode.
  g, s = _tiny(architecture="orig")
  ref = _jacrev_reference(g, s, 2, False)
  maps = gradmaps.gradient_maps(g, s, resolution=2, method="forward")
  assert maps.shape == (2, 20, 2, 2)
  np.testing.assert_allclose(maps, _maps(ref), atol=2e-5)
  # Pooling is a box mean.
  img = jnp.asarray(np.random.RandomState(0).randn(1, 16, 16, 3), jnp.float32)
  np.testing.assert_allclose(jacobian_modes._pool(img, 4)[0, :, 1, 2], img[0, 4:8, 8:12].mean(axis=(0, 1)), atol=1e-6)
  with pytest.raises(ValueError):
    gradmaps.gradient_maps(g, s, resolution=3)


def test_float64_central_differences():
  # g.synthesis casts styles to float32, so the differences use the stepwise render
  # (checked against g.synthesis above), which keeps float64 throughout.
  g, s = _tiny()
  with jax.enable_x64(True):
    g64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), g)
    s64 = tuple(jnp.asarray(v[:1], jnp.float64) for v in s)
    pl = planning.plan(g.config, 4, True, method="local", cut_resolution=0)  # every layer on crops
    j = gradmaps.jacobian(g64, s64, resolution=4, include_torgb=True, method=pl)[0]
    assert j.dtype == jnp.float64
    render = jax.jit(lambda s: jacobian_modes._pool(layers_lib._render(g64, s)[1], 4)[0])
    layers = gradmaps.considered_layers(g.layout, True)
    cols = [(m, c) for m in layers for c in range(g.layout[m].channels)]
    h = 1e-7
    for idx in np.linspace(0, len(cols) - 1, 7).astype(int):  # channels spread over all layers
      m, c = cols[idx]
      plus, minus = list(s64), list(s64)
      plus[m] = plus[m].at[0, c].add(h)
      minus[m] = minus[m].at[0, c].add(-h)
      fd = (render(tuple(plus)) - render(tuple(minus))) / (2 * h)
      np.testing.assert_allclose(j[idx], fd, atol=1e-7, err_msg=str(cols[idx]))


@pytest.mark.parametrize("name,ckpt", [("n1", "n1/n1.pkl"), ("r1", "r1/r1.pt")])
def test_shared_fixture_maps(fixtures_dir, name, ckpt):
  from ss_jax.stylegan2.checkpoint import load_checkpoint

  g, _ = load_checkpoint(fixtures_dir / "stylegan2" / ckpt)
  ref = np.load(fixtures_dir / "gradmaps" / f"{name}.npz")
  names = json.loads(str(ref["layer_names"]))
  conv = [L for L in g.layout if L.kind == "conv"]
  assert [f"style_{L.index:02d}_{L.name}" for L in conv] == names
  assert [L.channels for L in conv] == list(ref["layer_channels"])
  maps = gradmaps.gradient_maps(g, g.styles(ref["ws"]), resolution=int(ref["pooled_resolution"]))
  assert maps.shape == ref["maps"].shape
  np.testing.assert_allclose(maps, ref["maps"], atol=1e-5)


def test_sharded_over_four_devices_matches_one_and_flat_styles():
  if jax.device_count() < 4:
    pytest.skip("needs 4 (fake) devices")
  g, s = _tiny()
  s = tuple(jnp.concatenate([v, 0.9 * v[:1]]) for v in s)  # 3 images: padded to 4
  one = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  four = jax.make_mesh((4,), ("data",), devices=jax.devices()[:4])
  a = gradmaps.gradient_maps(g, s, resolution=4, method="reverse", mesh=one)
  b = gradmaps.gradient_maps(g, s, resolution=4, method="reverse", mesh=four)
  assert a.shape == b.shape == (3, 20, 4, 4) and a.dtype == jnp.float32
  np.testing.assert_allclose(a, b, atol=1e-6)
  flat = jnp.concatenate(s, axis=1)
  np.testing.assert_allclose(gradmaps.gradient_maps(g, flat, resolution=4, method="reverse", mesh=four), b, atol=1e-6)
  with pytest.raises(ValueError):
    gradmaps.gradient_maps(g, flat[:, :-1])
  with pytest.raises(ValueError):
    gradmaps.gradient_maps(g, s, method="bogus")
  with pytest.raises(ValueError):
    gradmaps.gradient_maps(g, s, chunk_size=0)


def test_run_job_equals_run_gradient_maps_on_any_device_count(tmp_path):
  from gradmap_reference import run_gradient_maps
  from ss_jax.runtime import distributed
  from ss_jax.stylespace.gradmaps import storage

  g, _ = _tiny()
  ref = storage.gradient_map_job(tmp_path / "ref", g, range(5), "tiny", 4, images_per_shard=2)
  run_gradient_maps(ref, g, method="reverse")
  gm = storage.gradient_map_job(tmp_path / "job", g, range(5), "tiny", 4, images_per_shard=2)
  assert gradmaps.run_job(gm, g, method="reverse") == 5 and gm.complete()  # 4 devices, 2 images per shard
  os.remove(gm.shard_path(1))
  kept = os.stat(gm.shard_path(0)).st_mtime_ns
  one = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  assert gradmaps.run_job(gm, g, method="reverse", mesh=one) == 2  # only the missing shard, on 1 device
  assert os.stat(gm.shard_path(0)).st_mtime_ns == kept
  distributed.wait_for_shards(gm)
  for i in range(3):
    a, b = gm.read(i), ref.read(i)
    assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype for k in a)
    for k in ("seeds", "index"):
      np.testing.assert_array_equal(a[k], b[k])
    assert np.abs(a["images"].astype(int) - b["images"]).max() <= 1  # uint8 rounding of float noise
    np.testing.assert_allclose(a["styles"], b["styles"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a["maps"], b["maps"], rtol=1e-5, atol=1e-6)


def test_plan_prefers_local_on_fixture_like_models():
  from ss_jax.stylegan2.generator import config_f

  n1_like = GeneratorConfig(z_dim=64, w_dim=64, img_resolution=32, channels=(64,) * 4, mapping_layers=2)
  assert planning.plan(n1_like).method == "local"
  big = planning.plan(config_f(256))
  assert big.method == "local" and big.macs < 0.1 * planning.plan(config_f(256), method="forward").macs


def test_local_plan_chunks_are_powers_of_two_within_the_memory_budget():
  from ss_jax.stylegan2.config import style_layout
  from ss_jax.stylegan2.generator import config_f

  for res in (256, 1024):
    cfg = config_f(res)
    pl = planning.plan(cfg)
    layout = style_layout(cfg)
    budget = min(planning._default_chunk(layout, pl.cut), planning._contraction_chunk(cfg, layout, pl.cut, pl.tile, 32))
    assert pl.chunk & (pl.chunk - 1) == 0 and pl.chunk <= budget < 2 * pl.chunk, (res, pl.chunk, budget)
  assert planning.plan(config_f(256), chunk_size=200).chunk == 200  # an explicit size is kept as given
