"""Parity with the official PyTorch code on the shared fixtures (the acceptance test).

Every fixture is loaded straight from its checkpoint file and through a converted
orbax directory; w, truncated w, every style block and the const-noise images
(psi 1, psi 0.7, W+, one-channel edit) must match the references computed by the
official code: images to 1e-4 absolute, w and styles to 1e-5 relative.
"""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import ss_jax
from ss_jax.stylegan2.checkpoint import load_checkpoint

FIXTURES = {"n1": "n1/n1.pkl", "n2": "n2/n2.pkl", "r1": "r1/r1.pt", "t1": "t1/t1.pkl"}
IMG_ATOL = 1e-4
STYLE_RTOL = 1e-5


def _rel(a, ref):
  return float(np.max(np.abs(np.asarray(a) - ref)) / max(np.max(np.abs(ref)), 1e-12))


def _nchw(x):
  return np.transpose(np.asarray(x), (0, 3, 1, 2))


@pytest.fixture(scope="module", params=sorted(FIXTURES))
def case(request, fixtures_dir, tmp_path_factory):
  name = request.param
  d = fixtures_dir / "stylegan2" / name
  meta = json.loads((d / "meta.json").read_text())
  ref = dict(np.load(d / "ref.npz"))
  direct, _ = load_checkpoint(d / FIXTURES[name].split("/")[1])
  out = tmp_path_factory.mktemp(name) / "converted"
  proc = subprocess.run(
    [sys.executable, "-m", "converters", str(d / FIXTURES[name].split("/")[1]), str(out)],
    capture_output=True,
    text=True,
  )
  assert proc.returncode == 0, proc.stderr
  assert f"num_ws:          {meta['num_ws']}" in proc.stdout
  converted = ss_jax.load_generator(out)
  return name, meta, ref, {"direct": direct, "converted": converted}


@pytest.mark.parametrize("how", ["direct", "converted"])
def test_mapping_and_styles(case, how):
  name, meta, ref, gens = case
  g = gens[how]
  c = ref.get("c")
  ws = g.mapping(ref["z"], c=c)
  assert ws.shape == ref["ws"].shape
  assert _rel(ws, ref["ws"]) <= STYLE_RTOL
  assert _rel(g.w_avg, ref["w_avg"]) <= STYLE_RTOL
  assert _rel(g.mapping(ref["z"], c=c, psi=0.7), ref["ws_trunc"]) <= STYLE_RTOL
  styles = g.styles(ref["ws"])
  assert len(styles) == len(meta["styles"])
  for L, st, s in zip(g.layout, meta["styles"], styles):
    assert (L.resolution, L.channels, L.kind, L.w_index) == (
      st["resolution"],
      st["channels"],
      st["kind"],
      st["w_index"],
    )
    assert _rel(s, ref[st["name"]]) <= STYLE_RTOL, st["name"]


@pytest.mark.parametrize("how", ["direct", "converted", "winograd"])
def test_images(case, how, monkeypatch):
  name, meta, ref, gens = case
  if how == "winograd":  # every eligible 3x3 conv through ops.conv3x3_winograd (CPU's wide-layer path)
    monkeypatch.setattr(ss_jax.stylegan2.ops, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(ss_jax.stylegan2.ops, "WINOGRAD_MIN_SIDE", 8)
  g = gens["direct" if how == "winograd" else how]
  synth = jax.jit(lambda g, s: g.synthesis(s, noise_mode="const"))
  for ws_key, img_key in [("ws", "img_psi1"), ("ws_trunc", "img_psi07"), ("ws_plus", "img_ws_plus")]:
    img = _nchw(synth(g, g.styles(ref[ws_key])))
    err = np.max(np.abs(img - ref[img_key]))
    assert err <= IMG_ATOL, f"{name} {img_key}: max abs error {err:.3g}"
  edit = meta["edit"]
  styles = list(g.styles(ref["ws"]))
  i = edit["layer_index"]
  styles[i] = styles[i].at[:, edit["channel"]].add(edit["delta"])
  assert _rel(styles[i], ref["style_edit_layer_edited"]) <= STYLE_RTOL
  err = np.max(np.abs(_nchw(synth(g, tuple(styles))) - ref["img_edit"]))
  assert err <= IMG_ATOL, f"{name} img_edit: max abs error {err:.3g}"
