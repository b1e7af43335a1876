"""Channel explorer library and HTTP API: rendering service, edit files, catalogue, uploads, safety.

The browser itself is driven in test_explorer_browser.py.
"""

import io
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from ss_jax.stylespace.gradmaps import api as gradmaps
from ss_jax.runtime import images
from ss_jax.stylespace import manipulate, stats, channels as stylespace
from ss_jax.runtime import fingerprints
from ss_jax.stylegan2 import sampling
from ss_jax import save_generator
from ss_jax.explorer import app as app_lib
from ss_jax.explorer import catalogue, edit_spec, renderer, state, uploads, views

import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def setup():
  g = tiny.tiny_generator()
  pop = sampling.styles_from_seeds(g, range(64), psi=0.7, batch_size=64)
  return g, pop, pop.astype(np.float64).std(0)


@pytest.fixture(scope="module")
def explorer(setup):
  g, _, std = setup
  ex = state.Explorer(g, name="tiny", sigma=std, sigma_source="test", encoder_reason="no encoder (test)")
  yield ex
  ex.close()


@pytest.fixture(scope="module")
def client(explorer):
  return app_lib.create_app(explorer).test_client()


H = {"X-Explorer": "1"}


def test_render_rows_match_manipulate_render(setup):
  g, pop, _ = setup
  x = renderer.render_rows(g, pop[:3])
  np.testing.assert_array_equal(x, images.to_uint8(manipulate.render(g, pop[:3])))
  assert [renderer.bucket(n) for n in (1, 2, 3, 5, 8, 20)] == [1, 2, 4, 8, 8, 8]


def test_seed_styles_match_population_convention(setup):
  g, pop, _ = setup
  np.testing.assert_allclose(renderer.seed_styles(g, [3, 7], 0.7), pop[[3, 7]], rtol=1e-6, atol=1e-6)


def test_service_batches_concurrent_requests_and_keeps_rows_apart(setup):
  g, pop, _ = setup
  svc = renderer.RenderService(g, max_batch=4)  # buckets 1, 2, 4
  try:
    svc.render(pop[:1])
    base = svc.counters["batches"]
    results = [None] * 12

    def client_thread(i):
      results[i] = svc.render(pop[i : i + 1 + i % 2])

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(12)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    want = renderer.render_rows(g, pop[:13], max_batch=4)
    for i, r in enumerate(results):
      np.testing.assert_array_equal(r, want[i : i + 1 + i % 2])
    assert svc.counters["requests"] == 13 and svc.counters["batches"] - base < 12  # some shared batches
    with pytest.raises(ValueError, match="flat S rows"):
      svc.submit(pop[:1, :5])
  finally:
    svc.close()


def test_channel_map_matches_finite_differences(setup):
  g, pop, _ = setup
  considered = stylespace.considered_indices(g.layout)
  h = 1e-2
  for c in (considered[0], considered[len(considered) // 2]):
    x = np.repeat(pop[:1], 2, 0)
    x[0, c] += h
    x[1, c] -= h
    img = np.asarray(renderer._render(g, x), np.float64)  # pylint: disable=protected-access
    pooled = img.reshape(2, 8, 2, 8, 2, 3).mean((2, 4))
    fd = np.abs(pooled[0] - pooled[1]).mean(-1) / (2 * h)
    m = renderer.channel_map(g, pop[0], c, res=8)
    assert m.shape == (8, 8) and m.max() > 0
    np.testing.assert_allclose(m, fd, atol=2e-2 * fd.max(), rtol=2e-2)


@pytest.mark.slow
def test_channel_map_is_a_column_of_the_gradient_maps(setup):
  g, pop, _ = setup
  maps = gradmaps.gradient_maps(g, pop[:1], resolution=8, method="forward")  # (1, C_conv, 8, 8)
  considered = stylespace.considered_indices(g.layout)
  for pos in (0, len(considered) - 1):
    np.testing.assert_allclose(
      renderer.channel_map(g, pop[0], considered[pos], res=8), maps[0, pos], rtol=1e-4, atol=1e-6
    )


def test_edit_spec_round_trip_and_replay(setup, tmp_path):
  g, pop, std = setup
  code = pop[5]
  spec = edit_spec.make_spec(
    g,
    [edit_spec.seed_image(2, 0.7), edit_spec.code_image(code, "x.png", "encoder")],
    ["3_5", "0_1"],
    [2.5, -4.0],
    std,
    "test",
  )
  path = tmp_path / "edit.json"
  path.write_text(json.dumps(spec))
  back = edit_spec.load(path, g.layout)
  assert back == spec and back["edits"][0]["sigma"] == float(np.float32(std[g.layout[3].offset + 5]))
  base = edit_spec.base_styles(g, back["images"])
  np.testing.assert_array_equal(base[1], code)  # codes survive JSON exactly
  edited = edit_spec.apply(g.layout, base, back["edits"])
  changed = np.flatnonzero((edited != base).any(0))
  assert changed.tolist() == sorted([g.layout[3].offset + 5, g.layout[0].offset + 1])
  # Same edit as ss_jax.stylespace.manipulate (one channel at a time there): pixels agree to rounding.
  one = edit_spec.make_spec(g, [edit_spec.seed_image(2, 0.7)], ["3_5"], [2.5], std)
  ref = images.to_uint8(manipulate.edited_images(g, pop[2:3], "3_5", [2.5], std))[0, 0]
  assert np.abs(edit_spec.replay(g, one)[0].astype(int) - ref).max() <= 1
  from PIL import Image

  paths = edit_spec.replay_file(g, path, tmp_path / "out")
  x = np.stack([np.asarray(Image.open(p)) for p in paths])
  np.testing.assert_array_equal(x, edit_spec.replay(g, spec))


@pytest.mark.parametrize(
  "mutate,match",
  [
    (lambda s: s.update(format="x"), "not an ss-jax edit"),
    (lambda s: s["images"][1].update(code=[0.0] * 3), "list of"),
    (lambda s: s["images"].append({"seed": 1, "code": []}), "either"),
    (lambda s: s["edits"].append(dict(s["edits"][0])), "edited twice"),
    (lambda s: s["edits"][0].update(alpha=float("nan")), "finite"),
    (lambda s: s["edits"][0].update(channel="99_1"), "out of range"),
  ],
)
def test_edit_spec_errors(setup, mutate, match):
  g, pop, std = setup
  spec = edit_spec.make_spec(g, [edit_spec.seed_image(2, 0.7), edit_spec.code_image(pop[0])], ["3_5"], [1.0], std)
  mutate(spec)
  with pytest.raises(ValueError, match=match):
    edit_spec.check(spec, g.layout)


def test_replay_refuses_another_generator(setup):
  g, _, std = setup
  spec = edit_spec.make_spec(g, [edit_spec.seed_image(2, 0.7)], ["3_5"], [1.0], std)
  with pytest.raises(ValueError, match="made with generator"):
    edit_spec.replay(tiny.tiny_generator(seed=1), spec)


def test_catalogue_from_workdir_lists_verified_first(setup, tmp_path):
  g, _, std = setup
  (tmp_path / "local").mkdir()
  det = {
    "settings": {},
    "categories": [
      {
        "category": "hair",
        "id": 0,
        "detected": [
          {"name": "3_5", "flat": 0, "fraction": 0.7, "margin": 0.4},
          {"name": "6_2", "fraction": 0.9, "margin": 0.5},
        ],
      },
      {"category": "mouth", "id": 1, "detected": [{"name": "0_1", "fraction": 0.8}]},
    ],
  }
  ver = {"categories": [{"category": "mouth", "verified": [{"name": "6_2", "locality": 0.81, "note": "x"}]}]}
  (tmp_path / "local" / "detections.json").write_text(json.dumps(det))
  (tmp_path / "verified.json").write_text(json.dumps(ver))
  stats.save(tmp_path / "stats" / "stats.npz", {"mean": std * 0, "std": std, "count": 64}, g.layout)
  res = catalogue.load_workdir(g.layout, tmp_path)
  np.testing.assert_allclose(res["std"], std)
  names = [(e["name"], e["category"], e["verified"]) for e in res["entries"]]
  assert names[0] == ("6_2", "mouth", True)
  assert names[1:] == [("0_1", "mouth", False), ("6_2", "hair", False), ("3_5", "hair", False)]  # category order
  assert res["entries"][0]["measures"] == {"verified locality": 0.81}
  assert res["categories"] == ["mouth", "hair"]
  with pytest.raises(ValueError, match="categories"):
    catalogue.from_results(g.layout, verified={"verified": []})


def test_views_locality_and_outline():
  d = np.zeros((8, 8))
  d[2:4, 2:4] = 3.0
  d[6, 6] = 1.0
  mask = np.zeros((8, 8), bool)
  mask[1:5, 1:5] = True
  share, area = views.locality(d, mask)
  assert share == pytest.approx(12 / 13) and area == pytest.approx(16 / 64)
  edge = views.outline_rgba(mask)[..., 3] > 0
  assert edge.sum() == 12 and not edge[2:4, 2:4].any()
  assert views.changed_region(d).sum() == 5 and views.locality(np.zeros((8, 8)), mask)[0] is None


def _png(w, h, mode="RGB"):
  from PIL import Image

  buf = io.BytesIO()
  Image.new(mode, (w, h), 128).save(buf, format="PNG")
  return buf.getvalue()


def test_upload_decoding_limits(monkeypatch):
  x, notes = uploads.decode(_png(16, 16), 16)
  assert x.shape == (16, 16, 3) and x.dtype == np.uint8 and notes == []
  x, notes = uploads.decode(_png(40, 20, "RGBA"), 16)
  assert x.shape == (16, 16, 3) and "alpha channel dropped" in notes and any("40x20" in n for n in notes)
  with pytest.raises(ValueError, match="not an image"):
    uploads.decode(b"GIF89a" + b"\0" * 100, 16)
  with pytest.raises(ValueError, match="not an image"):
    uploads.decode(b"#!/bin/sh\nrm -rf /\n", 16)
  monkeypatch.setattr(uploads, "MAX_PIXELS", 100)
  with pytest.raises(ValueError, match="megapixels"):
    uploads.decode(_png(11, 10), 16)
  monkeypatch.setattr(uploads, "MAX_BYTES", 10)
  with pytest.raises(ValueError, match="limit"):
    uploads.decode(_png(4, 4), 16)


def test_api_render_channel_export(client, setup):
  g, pop, std = setup
  info = client.get("/api/info").get_json()
  assert info["resolution"] == 16 and not info["upload"]["available"]
  body = {
    "images": [{"seed": 2, "psi": 0.7}],
    "edits": [{"channel": "3_5", "alpha": 5}],
    "delta": True,
    "outline": True,
  }
  r = client.post("/api/render", json=body, headers=H).get_json()
  img = r["images"][0]
  assert img["region"].startswith("|delta|") and img["max_delta"] > 0 and 0 <= img["locality"] <= 1
  ex = client.post("/api/export", json=body, headers=H).get_json()
  assert ex["spec"]["edits"] == [
    {"channel": "3_5", "alpha": 5.0, "sigma": float(np.float32(std[g.layout[3].offset + 5]))}
  ]
  assert ex["images"][0] == img["image"]  # the live view equals the exported (replayable) image
  ch = client.post("/api/channel", json={"name": "3_5", "image": {"seed": 2, "psi": 0.7}}, headers=H).get_json()
  assert ch["name"] == "3_5" and ch["map"].startswith("data:image/png") and ch["thumbnail_alphas"] == [-10, 0, 10]


def test_api_safety(client, explorer, monkeypatch):
  assert client.post("/api/render", json={}, headers=H).get_json() == {"error": "no images selected"}
  assert client.post("/api/render", json={"images": [{"seed": 1}]}).status_code == 403  # no X-Explorer header
  assert client.get("/api/info", headers={"Host": "evil.example:80"}).status_code == 403
  assert client.get("/static/..%2f..%2fsetup.cfg").status_code == 404
  assert client.get("/static/app.py").status_code == 404
  r = client.post("/api/render", data="not json", headers=H)
  assert r.status_code == 400 and r.get_json() == {"error": "expected a JSON object"}
  r = client.post("/api/upload", data={"file": (io.BytesIO(_png(4, 4)), "a.png")}, headers=H)
  assert r.status_code == 400 and "no encoder" in r.get_json()["error"]
  r = client.post(
    "/api/upload", data={"file": (io.BytesIO(b"\0" * (uploads.MAX_BYTES + 100 * 1024)), "a.png")}, headers=H
  )
  assert r.status_code == 413 and "limit" in r.get_json()["error"]
  monkeypatch.setattr(explorer, "render", lambda *a: (_ for _ in ()).throw(RuntimeError("/secret/path")))
  r = client.post("/api/render", json={"images": []}, headers=H)
  assert r.status_code == 500 and "secret" not in r.get_data(as_text=True) and "Traceback" not in r.get_data(True)
  assert "default-src 'none'" in client.get("/").headers["Content-Security-Policy"]


def test_upload_inverts_with_an_encoder(setup):
  from ss_jax.inversion import encoder, normaliser
  import jax

  g, _, std = setup
  cfg = tiny.tiny_encoder_config(g)
  enc = encoder.Encoder(
    cfg,
    encoder.fresh_params(cfg, jax.random.key(0)),
    normaliser.Normaliser.identity(cfg.num_style_channels, cfg.w_dim),
    fingerprints.model_fingerprint(g),
  )
  ex = state.Explorer(g, sigma=std, encoder=enc)
  try:
    c = app_lib.create_app(ex).test_client()
    r = c.post("/api/upload", data={"file": (io.BytesIO(_png(32, 32)), "../../etc/passwd.png")}, headers=H)
    d = r.get_json()
    assert r.status_code == 200 and d["name"] == "....etcpasswd.png" and d["notes"] == ["resized 32x32 -> 16x16"]
    r = c.post("/api/export", json={"images": [{"upload": d["id"]}], "edits": []}, headers=H).get_json()
    assert len(r["spec"]["images"][0]["code"]) == stylespace.num_channels(g.layout)
    assert c.post("/api/render", json={"images": [{"upload": "nope"}]}, headers=H).status_code == 400
  finally:
    ex.close()


@pytest.mark.slow  # test_explorer_browser.py replays an export with the binary in the default suite
def test_manipulate_binary_replays_an_edit_file(setup, tmp_path):
  g, _, std = setup
  save_generator(g, tmp_path / "gen")
  spec = edit_spec.make_spec(g, [edit_spec.seed_image(4, 0.5)], ["6_2"], [-7.5], std)
  (tmp_path / "e.json").write_text(json.dumps(spec))
  r = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.manipulate",
      f"--edit={tmp_path / 'e.json'}",
      f"--checkpoint={tmp_path / 'gen'}",
      f"--outdir={tmp_path / 'out'}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    env=dict(os.environ, PYTHONPATH=REPO),
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-2000:]
  from PIL import Image

  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "edit_0.png")), edit_spec.replay(g, spec)[0])


def test_no_encoder_for_another_generator(setup):
  g, _, _ = setup
  enc, reason = uploads.load_encoder_for(g)  # the shipped encoder belongs to the ToyFaces generator
  assert enc is None and "no encoder" in reason


@pytest.mark.slow
def test_on_the_fly_locality_with_a_fake_segmenter(setup):
  from ss_jax.stylespace import segmentation

  g, _, std = setup
  table = segmentation.table_from_dict(
    "halves", ["top", "bottom"], ["top", "bottom"], {"top": ["top"], "bottom": ["bottom"]}, default=None
  )

  def segmenter(x):  # top half class 0, bottom half class 1
    lab = np.zeros(x.shape[:3], np.int32)
    lab[:, x.shape[1] // 2 :] = 1
    return lab

  cats, entries, maps = catalogue.measure_locality(g, segmenter, table, seeds=range(4), resolution=8)
  assert set(cats) <= {"top", "bottom"} and entries and all(not e["verified"] for e in entries)
  for e in entries:  # the decision rule of experiments.detect_local (threshold 0.5, margin 0.25)
    assert e["measures"]["fraction"] > 0.5 and e["measures"]["margin"] > 0.25 and e["measures"]["images"] == 4
    assert maps[e["name"]].shape == (8, 8)
  ex = state.Explorer(g, sigma=std, segmenter=segmenter, table=table, measure=False)
  try:
    r = ex.render([{"seed": 1, "psi": 0.7}], [{"channel": entries[0]["name"], "alpha": 8}], True, True)
    assert r["images"][0]["region"].startswith(entries[0]["category"])
  finally:
    ex.close()
