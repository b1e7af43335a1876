"""StyleGAN3 parity with the official code on the shared fixtures s1 (T) and s2 (R, conditional).

Each fixture is loaded from its snapshot pickle and through a directory written by
`python -m converters`; w, truncated w, every style block, the input layer's Fourier
features and the images (psi 1, psi 0.7, a one-channel edit, W+ mixing, an input
transform at psi 1 and 0.7) must match the official references: images and input
features to 1e-4 absolute, w and styles to 1e-5 relative; the same under jax.jit.
"""

import json
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ss_jax
from ss_jax.stylegan2.checkpoint import load_checkpoint
from converters import nvidia, nvidia_sg3
from ss_jax.stylespace import channels as stylespace
from converters.io import CheckpointError, read_nvidia_pickle
from ss_jax.stylegan3 import StyleGAN3Config, StyleGAN3Generator, config_r, config_t, layer_table
from ss_jax.stylegan3 import generator as sg3
from ss_jax.stylegan3.filters import bessel_j1, layer_filters

IMG_ATOL = 1e-4
STYLE_RTOL = 1e-5
NAMES = ("s1", "s2")


def _rel(a, ref):
  return float(np.max(np.abs(np.asarray(a) - ref)) / max(np.max(np.abs(ref)), 1e-12))


def _nchw(x):
  return np.transpose(np.asarray(x), (0, 3, 1, 2))


@pytest.fixture(scope="module", params=NAMES)
def case(request, fixtures_dir, tmp_path_factory):
  name = request.param
  d = fixtures_dir / "stylegan3" / name
  meta = json.loads((d / "meta.json").read_text())
  ref = dict(np.load(d / "ref.npz"))
  direct, info = load_checkpoint(d / f"{name}.pkl")
  assert info["variant"] == ("T" if name == "s1" else "R")
  out = tmp_path_factory.mktemp(name) / "converted"
  proc = subprocess.run(
    [sys.executable, "-m", "converters", str(d / f"{name}.pkl"), str(out)], capture_output=True, text=True
  )
  assert proc.returncode == 0, proc.stderr
  assert "num_ws:          16" in proc.stdout and "StyleGAN3-" in proc.stdout
  converted = ss_jax.load_generator(out)
  assert isinstance(converted, StyleGAN3Generator)
  return name, meta, ref, {"direct": direct, "converted": converted}


def test_layer_table_and_filters_match_the_official_constructor(case):
  _, meta, _, gens = case
  g = gens["direct"]
  inp, table = layer_table(g.config)
  mi = meta["layers"][0]
  assert (inp.channels, inp.size, inp.sampling_rate, inp.bandwidth) == (
    mi["channels"],
    mi["size"][0],
    mi["sampling_rate"],
    mi["bandwidth"],
  )
  for spec, m in zip(table, meta["layers"][1:], strict=True):
    assert spec.name == m["name"] and spec.padding == tuple(m["padding"])
    for k in (
      "in_channels",
      "out_channels",
      "up_factor",
      "down_factor",
      "up_taps",
      "down_taps",
      "down_radial",
      "conv_kernel",
      "tmp_sampling_rate",
    ):
      assert getattr(spec, k) == m[k], (spec.name, k)
    assert math.isclose(spec.out_cutoff, m["out_cutoff"], rel_tol=1e-12)
    up, down = layer_filters(spec)  # designed without scipy: equal to the stored float32 filters
    for designed, stored in ((up, g.buffers["up_filters"][spec.idx]), (down, g.buffers["down_filters"][spec.idx])):
      if designed is None:
        assert np.shape(stored) == (1,)
      else:
        np.testing.assert_array_equal(designed, np.asarray(stored))
  # The layout: names, kinds, channels and order as meta.json's style table.
  assert [(L.name if L.kind == "input" else f"style_{L.index:02d}_{L.name}") for L in g.layout][1:] == [
    s["name"] for s in meta["styles"]
  ][1:]
  assert [(L.kind, L.channels, L.w_index) for L in g.layout] == [
    (s["kind"], s["channels"], s["w_index"]) for s in meta["styles"]
  ]


def test_bessel_j1_against_known_values():
  # J1 at 1, 5, 10 and its first zero (Abramowitz & Stegun tables).
  np.testing.assert_allclose(
    bessel_j1([1.0, 5.0, 10.0, 3.8317059702075125]),
    [0.4400505857449335, -0.3275791375914652, 0.04347274616886144, 0.0],
    atol=1e-14,
  )


@pytest.mark.parametrize("how", ["direct", pytest.param("converted", marks=pytest.mark.slow)])
def test_mapping_styles_and_images(case, how):
  name, meta, ref, gens = case
  g = gens[how]
  c = ref.get("c")
  assert _rel(g.mapping(ref["z"], c), ref["ws"]) <= STYLE_RTOL
  assert _rel(g.w_avg, ref["w_avg"]) <= STYLE_RTOL
  assert _rel(g.mapping(ref["z"], c, psi=0.7), ref["ws_trunc"]) <= STYLE_RTOL
  for key, ws in (("", ref["ws"]), ("_psi07", ref["ws_trunc"])):
    styles = g.styles(ws)
    for st, s in zip(meta["styles"], styles, strict=True):
      assert _rel(s, ref[st["name"] + key]) <= STYLE_RTOL, (st["name"], key)
  synth = jax.jit(lambda g, s, t: g.synthesis(s, input_transform=t))
  eye = np.eye(3, dtype=np.float32)
  for key, ws, t in (
    ("img_psi1", ref["ws"], eye),
    ("img_psi07", ref["ws_trunc"], eye),
    ("img_ws_mix", ref["ws_mix"], eye),
    ("img_transform", ref["ws"], ref["input_transform"]),
    ("img_transform_psi07", ref["ws_trunc"], ref["input_transform"]),
  ):
    img = synth(g, g.styles(ws), t)
    assert img.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(_nchw(img), ref[key], atol=IMG_ATOL, rtol=0, err_msg=key)
  # Through the method (jitted inside), default transform (the stored identity buffer).
  np.testing.assert_allclose(_nchw(g.synthesis(g.styles(ref["ws"]))), ref["img_psi1"], atol=IMG_ATOL, rtol=0)


def test_converted_directory_holds_the_same_generator(case):
  """Default-suite check of the converted directory (its images are compared @slow above): the same
  config and bit-identical arrays as the direct read, so synthesis (a pure function of them) is the same."""
  _, _, ref, gens = case
  direct, converted = gens["direct"], gens["converted"]
  assert converted.config == direct.config
  a = jax.tree_util.tree_flatten_with_path({"params": direct.params, "buffers": direct.buffers})[0]
  b = jax.tree_util.tree_flatten_with_path({"params": converted.params, "buffers": converted.buffers})[0]
  assert [jax.tree_util.keystr(k) for k, _ in a] == [jax.tree_util.keystr(k) for k, _ in b]
  for (k, x), (_, y) in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(k))
  assert _rel(converted.mapping(ref["z"], ref.get("c")), ref["ws"]) <= STYLE_RTOL


@pytest.mark.slow
def test_one_channel_edit_and_input_features(case):
  name, meta, ref, gens = case
  g = gens["direct"]
  edit = meta["edit"]
  flat = stylespace.parse_name(g.layout, f"{edit['layer_index']}_{edit['channel']}")
  assert g.layout[edit["layer_index"]].name == edit["layer"].split("_", 2)[2]
  s = ss_jax.flatten_styles(g.styles(ref["ws"]))
  s = s.at[:, flat].add(edit["delta"])
  blocks = ss_jax.unflatten_styles(g.layout, s)
  assert _rel(blocks[edit["layer_index"]], ref["style_edit_layer_edited"]) <= STYLE_RTOL
  np.testing.assert_allclose(_nchw(g.synthesis(blocks)), ref["img_edit"], atol=IMG_ATOL, rtol=0)
  s0 = g.styles(ref["ws"][:1])[0]
  inp = jax.jit(sg3.input_layer, static_argnums=0)
  for key, t in (
    ("input_features_sample0", np.eye(3, dtype=np.float32)),
    ("input_features_transform_sample0", ref["input_transform"]),
  ):
    x = inp(g.config, g.params, g.buffers, s0, t)
    np.testing.assert_allclose(_nchw(x), ref[key], atol=IMG_ATOL, rtol=0, err_msg=key)


def test_stylespace_addressing_skips_input_and_torgb(case):
  _, _, _, gens = case
  layout = gens["direct"].layout
  assert stylespace.num_channels(layout) == gens["direct"].num_style_channels
  assert stylespace.name_of(layout, 4) == "1_0" and stylespace.parse_name(layout, "0_3") == 3
  conv = stylespace.kind_mask(layout)
  assert conv.sum() == sum(L.channels for L in layout if L.kind == "conv") and not conv[:4].any()
  with_rgb = stylespace.kind_mask(layout, include_torgb=True)
  assert not with_rgb[:4].any() and with_rgb[-layout[-1].channels :].all()


def test_unsupported_network_is_one_line(fixtures_dir):
  snap = read_nvidia_pickle(fixtures_dir / "stylegan3" / "s1" / "s1.pkl")
  assert nvidia_sg3.looks_like_stylegan3(snap["G_ema"]) and not nvidia_sg3.looks_like_stylegan3(snap["D"])
  with pytest.raises(CheckpointError, match="not StyleGAN2 .* not StyleGAN3") as e:
    nvidia._check_stylegan2(snap["D"], "x.pkl")
  assert "\n" not in str(e.value)


@pytest.mark.slow
def test_random_configs_any_resolution_and_gradients():
  cfg_t = config_t(16, 8, 8, channel_base=256, channel_max=16, num_layers=3, num_critical=1, margin_size=2)
  cfg_r = config_r(24, 8, 8, c_dim=2, channel_base=256, channel_max=16, num_layers=3, num_critical=1, margin_size=2)
  assert cfg_t.variant == "T" and cfg_r.variant == "R"
  assert any(spec.down_radial for spec in layer_table(cfg_r)[1])
  for cfg in (cfg_t, cfg_r):
    g = StyleGAN3Generator.random(cfg, jax.random.PRNGKey(1))
    ws = g.mapping(np.ones((2, 8), np.float32), np.eye(2, dtype=np.float32) if cfg.c_dim else None)
    s = g.styles(ws)
    assert len(s) == cfg.num_layers + 2 and s[0].shape == (2, 4)
    img = g.synthesis(s)
    assert img.shape == (2, cfg.img_resolution, cfg.img_resolution, 3) and bool(jnp.all(jnp.isfinite(img)))
  grad = jax.grad(lambda s: jnp.sum(g.synthesis(s) ** 2))(s)
  assert all(bool(jnp.all(jnp.isfinite(v))) for v in grad) and float(jnp.abs(grad[2]).sum()) > 0
  with pytest.raises(ValueError, match="num_critical"):
    StyleGAN3Config(z_dim=8, w_dim=8, img_resolution=32, num_layers=2, num_critical=2)
