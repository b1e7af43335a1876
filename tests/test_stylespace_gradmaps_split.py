"""The local mode's transposed blocks (Plan.split): blocks below the split run as the transpose of
their tangent map at primal crops cut from a full-size forward pass; the Jacobian must equal
jacrev's and the official maps whatever the split."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from test_stylespace_gradmaps import _jacrev_reference, _tiny
from ss_jax.stylegan2.config import style_layout
from ss_jax.stylegan2.generator import config_f
from ss_jax.stylespace.gradmaps import api as gradmaps
from ss_jax.stylespace.gradmaps import planning


def _splits(g, cut):
  return [m for m, L in enumerate(g.layout) if L.kind == "conv" and L.up and m > cut]


def test_split_matches_jacrev():
  # Every layer on crops (cut 0), toRGB styles included, the 4 px block transposed, pooled 2x.
  g, s = _tiny()
  s = tuple(v[:1] for v in s)  # one image: two compilations make most of this test's time
  ref = _jacrev_reference(g, s, 4, True)
  pl = planning.plan(g.config, 4, True, method="local", cut_resolution=0, split=2, chunk_size=3)
  assert (pl.cut, pl.split) == (0, 2)
  np.testing.assert_allclose(gradmaps.jacobian(g, s, resolution=4, include_torgb=True, method=pl), ref, atol=2e-5)


def test_default_split_at_config_f_widths():
  # Blocks whose crops cover their map >= 3 times are transposed: up to b256 at 1024 px.
  cfg = config_f(1024)
  pl = planning.plan(cfg, 32)
  assert (pl.cut, pl.split) == (5, 20) and planning.plan(cfg, 32, split=0).split == 0
  with pytest.raises(ValueError):
    planning.plan(cfg, 32, split=6)  # not a block's first layer


@pytest.mark.slow
@pytest.mark.parametrize(
  "kw,res,tile",
  [
    (dict(architecture="resnet", conv_clamp=0.8, flavour="rosinality", img_resolution=16, channels=(8, 8, 4)), 4, 2),
    (dict(architecture="orig", img_resolution=16, channels=(8, 8, 4)), 8, 1),
    (dict(img_resolution=16, channels=(8, 8, 4), conv_clamp=0.5), 4, 2),
  ],
)
def test_every_split_matches_jacrev(kw, res, tile):
  g, s = _tiny(**kw)
  ref = _jacrev_reference(g, s, res, True)
  for cut_res in (0, 4):
    pl = planning.plan(g.config, res, True, method="local", cut_resolution=cut_res, tile=tile)
    for split in _splits(g, pl.cut):
      j = gradmaps.jacobian(g, s, resolution=res, include_torgb=True, method=dataclasses.replace(pl, split=split))
      np.testing.assert_allclose(j, ref, atol=2e-5, err_msg=f"cut {pl.cut} split {split}")


@pytest.mark.slow
@pytest.mark.parametrize("name,ckpt", [("n1", "n1/n1.pkl"), ("r1", "r1/r1.pt")])
def test_split_shared_fixture_maps(fixtures_dir, name, ckpt):
  from ss_jax.stylegan2.checkpoint import load_checkpoint

  g, _ = load_checkpoint(fixtures_dir / "stylegan2" / ckpt)
  ref = np.load(fixtures_dir / "gradmaps" / f"{name}.npz")
  res = int(ref["pooled_resolution"])
  pl = planning.plan(g.config, res, method="local", cut_resolution=4, split=_splits(g, 0)[-1])
  assert pl.split > pl.cut
  maps = gradmaps.gradient_maps(g, g.styles(ref["ws"]), resolution=res, method=pl)
  np.testing.assert_allclose(maps, ref["maps"], atol=1e-5)
  jax.clear_caches()


def test_trimmed_crop_up_conv_equals_the_padded_one():
  from ss_jax.stylegan2 import layers, ops

  rng = np.random.RandomState(0)
  n = 5
  x = jnp.asarray(rng.randn(2, n, n, 3), jnp.float32)
  w = jnp.asarray(rng.randn(3, 3, 3, 4), jnp.float32)
  padded = jax.jit(lambda x, w: ops.conv2d_up(x, w, ops.DEFAULT_FIR, ops.HIGHEST, phase_conv=layers._conv_valid))
  trimmed = jax.jit(lambda x, w: layers._up_phases_valid(x, w, ops.DEFAULT_FIR))
  np.testing.assert_array_equal(trimmed(x, w), padded(x, w)[:, 2 : 2 * n - 2, 2 : 2 * n - 2])


@pytest.mark.parametrize("res,p_res,tile", [(1024, 32, 1), (64, 8, 1)])
def test_cut_contraction_without_regrouping(res, p_res, tile):
  # The local mode's contraction of crop gradients at the cut with the tangents there, by its definition
  # J[ty, tx, m, k] = sum_{e, f} G[ty, tx, m, e, f] . T[k, a_ty + e, a_tx + f] (zero outside the map),
  # both by window offsets (no regrouped copy) and by regrouping by position.
  from ss_jax.stylespace.gradmaps import local

  cfg = config_f(res)
  pl = planning.plan(cfg, p_res, method="local", tile=tile)
  cp = local._crop_plan(cfg, pl.cut, tile, p_res)
  cut = style_layout(cfg)[pl.cut]
  size = cut.resolution // 2 if cut.up else cut.resolution  # the cut state's map
  rng = np.random.RandomState(0)
  for a, n in [cp.x_cut] + ([cp.img_cut] if cp.img_cut is not None else []):
    nt = len(a)
    gcut = rng.randn(nt, nt, 2, n, n, 3).astype(np.float32)
    tan = rng.randn(2, size, size, 3).astype(np.float32)
    tp = np.zeros((2, size + 2 * n, size + 2 * n, 3), np.float32)
    tp[:, n : n + size, n : n + size] = tan
    ref = np.zeros((nt, nt, 2, 2), np.float64)
    for ty in range(nt):
      for tx in range(nt):
        win = tp[:, a[ty] + n : a[ty] + 2 * n, a[tx] + n : a[tx] + 2 * n]  # (k, n, n, C)
        ref[ty, tx] = np.einsum("mefc,kefc->mk", gcut[ty, tx], win)
    assert local._regular(a) is not None
    got = local._contract_windows(jnp.asarray(gcut), (a, n), jnp.asarray(tan))
    np.testing.assert_allclose(got, ref, atol=1e-4)
    tables = local._contraction_tables((a, n), size)
    np.testing.assert_allclose(local._contract(local._rows(jnp.asarray(gcut), tables), tables, tan), ref, atol=1e-4)
  assert local._regular(np.array([0, 0, 1, 3])) is None


@pytest.mark.slow
def test_windowed_contraction_matches_jacrev(monkeypatch):
  # The local mode with the contraction window by window (local.REGROUP = False): resnet with clamping,
  # cut at 4 px (layers below it by forward mode), 2x2 tiles, toRGB styles included.
  from ss_jax.stylespace.gradmaps import local

  g, s = _tiny(architecture="resnet", conv_clamp=0.8)
  s = tuple(v[:1] for v in s)
  ref = _jacrev_reference(g, s, 4, True)
  pl = planning.plan(g.config, 4, True, method="local", cut_resolution=4, tile=2)
  assert local._regular(local._crop_plan(g.config, pl.cut, 2, 4).x_cut[0]) is not None
  monkeypatch.setattr(local, "REGROUP", False)
  jax.clear_caches()  # the traced programs read REGROUP
  try:
    np.testing.assert_allclose(gradmaps.jacobian(g, s, resolution=4, include_torgb=True, method=pl), ref, atol=2e-5)
  finally:
    jax.clear_caches()
