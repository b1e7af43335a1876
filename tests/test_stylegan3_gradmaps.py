"""StyleSpace gradient maps of StyleGAN3 generators vs the official maps (shared/fixtures/gradmaps_sg3).

The official maps were computed with torch.func.jvp over one-hot tangents of the
conv styles (L0 ... L13), image rendered alone, pooled to 32 x 32 (no pooling at
32 px). Here: two layers' maps of one image of s1 in the default suite (s2 @slow); @slow: all maps
with the method chosen by the planner (forward), and reverse mode on 64 pixels of s1 (all 3,072 rows
take minutes per image on 2 cores).
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ss_jax.stylegan2.checkpoint import load_checkpoint
from ss_jax.stylespace.gradmaps import api as gradmaps
from ss_jax.stylespace.gradmaps import planning
from ss_jax.stylespace.gradmaps import stylegan3 as sg3_jacobian

MAP_ATOL = 1e-5


def _load(fixtures_dir, name):
  ref = dict(np.load(fixtures_dir / "gradmaps_sg3" / f"{name}.npz"))
  g, _ = load_checkpoint(fixtures_dir / "stylegan3" / name / f"{name}.pkl")
  return g, ref


@pytest.mark.parametrize("name", ["s1", pytest.param("s2", marks=pytest.mark.slow)])
def test_middle_and_last_layer_maps_match_official(fixtures_dir, name):
  """Fast check: forward-mode maps of L7 and L13 for image 0 (the full maps are @slow below)."""
  g, ref = _load(fixtures_dir, name)
  layers = (8, 14)
  s = tuple(v[:1] for v in g.styles(ref["ws"][:1]))
  fn = jax.jit(lambda g, s: jnp.mean(jnp.abs(sg3_jacobian.jac_forward(g, s, 32, layers, 64)), axis=1))
  maps = np.asarray(fn(g, s))
  offsets = np.cumsum([0] + list(ref["layer_channels"]))
  want = np.concatenate([ref["maps"][0, offsets[m - 1] : offsets[m]] for m in layers])
  assert maps.shape == want.shape
  np.testing.assert_allclose(maps, want, atol=MAP_ATOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["s1", "s2"])
def test_maps_match_official(fixtures_dir, name):
  g, ref = _load(fixtures_dir, name)
  names = json.loads(str(ref["layer_names"]))
  convs = [L for L in g.layout if L.kind == "conv"]
  assert [f"style_{L.index:02d}_{L.name}" for L in convs] == names
  assert [L.channels for L in convs] == list(ref["layer_channels"])
  pl = planning.plan(g.config, 32)
  assert pl.method == "forward" and pl.family == "stylegan3"
  maps = np.asarray(gradmaps.gradient_maps(g, g.styles(ref["ws"]), method=pl))
  assert maps.shape == ref["maps"].shape
  np.testing.assert_allclose(maps, ref["maps"], atol=MAP_ATOL, rtol=0)


def test_local_mode_is_refused_with_a_reason(fixtures_dir):
  g, _ = _load(fixtures_dir, "s1")
  with pytest.raises(ValueError, match="not available for StyleGAN3"):
    planning.plan(g.config, 32, method="local")


@pytest.mark.slow
def test_reverse_mode_matches_official(fixtures_dir):
  """Reverse mode over every conv layer of s1's image 0, on 64 pixels spread over the map (their 3
  colours: 192 backward passes, 1/16 of the full J, which takes minutes on 2 cores): the official maps."""
  g, ref = _load(fixtures_dir, "s1")
  s = tuple(v[:1] for v in g.styles(ref["ws"][:1]))
  layers = gradmaps.considered_layers(g.layout)
  pix = np.linspace(0, 32 * 32 - 1, 64).astype(np.int32)
  rows = (np.arange(3)[:, None] * 32 * 32 + pix[None]).ravel()  # NCHW flat indices, colour-major
  fn = jax.jit(lambda g, s: sg3_jacobian.jac_reverse(g, s, 32, layers, 64, rows=rows))
  jt = np.asarray(fn(g, s))  # (C_conv, 192)
  maps = np.abs(jt).reshape(len(jt), 3, len(pix)).mean(1)
  want = ref["maps"][0].reshape(len(jt), -1)[:, pix]
  assert want.max() > 0.1
  np.testing.assert_allclose(maps, want, atol=MAP_ATOL, rtol=0)
  # The public API's reverse mode runs the same code over all rows (forward == reverse on a tiny
  # StyleGAN3: test_stylegan3_stylespace.test_forward_and_reverse_gradient_maps_agree).


@pytest.mark.slow
def test_jacobian_with_torgb_keeps_the_official_conv_columns(fixtures_dir):
  g, ref = _load(fixtures_dir, "s1")
  j = np.asarray(gradmaps.jacobian(g, g.styles(ref["ws"][:1]), include_torgb=True, method="forward"))
  assert j.shape[1] == ref["maps"].shape[1] + g.layout[-1].channels
  np.testing.assert_allclose(np.abs(j[0, : -g.layout[-1].channels]).mean(1), ref["maps"][0], atol=MAP_ATOL)
