"""StyleSpace analyses run on StyleGAN3 generators unchanged: W -> S directions and SeFa, the explorer,
edit verification, attribute dependency and the attribute bank.

The default tests use the 16 px 4-layer StyleGAN3-T of test_stylegan3_stylespace (jit compiles in
seconds); the same analyses on the 32 px fixture generators s1 (T) and s2 (R, conditional) are
@slow (about a minute of compilation each). Every expected value comes from an independent path:
the generator's own styles/synthesis, manipulate's renders, finite differences, or the official
gradient maps of shared/fixtures/gradmaps_sg3.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ss_jax
from ss_jax.dci import attribute_bank as ab
from ss_jax.dci import ad_edits, ad_population
from ss_jax.dci import attribute_dependency as ad
from ss_jax.dci import sampling as dci_sampling
from ss_jax.explorer import app as app_lib
from ss_jax.explorer import edit_spec, renderer, state
from ss_jax.runtime import images
from ss_jax.stylegan2 import sampling
from ss_jax.stylegan2.generator import flatten_styles, unflatten_styles
from ss_jax.stylespace import channels as stylespace
from ss_jax.stylespace import directions, manipulate, segmentation
from ss_jax.stylespace import verification as V
from test_stylegan3_stylespace import tiny_sg3

H = {"X-Explorer": "1"}


@pytest.fixture(scope="module")
def g():
  return tiny_sg3()


def _fixture(fixtures_dir, name):
  return ss_jax.load_generator(fixtures_dir / "stylegan3" / name / f"{name}.pkl")


def _colour_logits(x):
  """Stand-in classifier: 3 linear image statistics of (B, H, W, 3) images in [-1, 1]."""
  h = x.shape[1] // 2
  r, gb = x[..., 0].mean((1, 2)), x[..., 1].mean((1, 2)) - x[..., 2].mean((1, 2))
  return jnp.stack([r, gb, x[:, :h, :, 2].mean((1, 2)) - x[:, h:, :, 2].mean((1, 2))], axis=1)


COLOUR = dci_sampling.AttributeFunction(_colour_logits, ("red", "green_blue", "top_bottom"), "colour", traceable=True)


def _halves(seeds, index, u8):
  """Stand-in segmenter: skin (1) where the red channel is bright, hair (17) elsewhere."""
  return np.where(u8[..., 0] > 127, 1, 17).astype(np.int32)


def test_w_to_s_and_sefa_count_the_input_layer(g):
  """Regression: S layer 0 of StyleGAN3 is the input's affine (params['synthesis']['input'])."""
  cfg = g.config
  rng = np.random.default_rng(2)
  ws = rng.normal(size=(2, cfg.num_ws, cfg.w_dim)).astype(np.float32)
  u = rng.normal(size=cfg.w_dim).astype(np.float32)
  for rows in (None, (0, 2)):
    dws = np.zeros_like(ws)
    dws[:, list(range(cfg.num_ws)) if rows is None else list(rows)] = 1.5 * u
    explicit = np.asarray(flatten_styles(g.styles(ws + dws)) - flatten_styles(g.styles(ws)))
    np.testing.assert_allclose(
      explicit, np.broadcast_to(1.5 * directions.w_to_s(g, u, rows), explicit.shape), atol=2e-5
    )
  # affine_weights = d s / d w of the layer's own w row, from the generator's styles by autodiff.
  for li in (0, 2, len(g.layout) - 1):
    L = g.layout[li]
    jac = jax.jacobian(lambda w: flatten_styles(g.styles(w))[0, L.offset : L.offset + L.channels])(ws[:1])
    np.testing.assert_allclose(directions.affine_weights(g, [li]), jac[:, 0, L.w_index], atol=1e-6)
  assert directions.sefa(g, [1, 2], k=3)["components"].shape == (3, cfg.w_dim)


def _explorer_checks(g, std, seed, chan, channel_map=True, against_manipulate=False):
  """Render and export (and channel-map) requests; returns the image's flat S (1, C) and its map."""
  ex = state.Explorer(g, name="sg3", sigma=std, sigma_source="test", encoder_reason="none (test)")
  try:
    client = app_lib.create_app(ex).test_client()
    assert client.get("/api/info").get_json()["resolution"] == g.config.img_resolution
    body = {"images": [{"seed": seed, "psi": 0.7}], "edits": [{"channel": chan, "alpha": 5}], "delta": True}
    r = client.post("/api/render", json=body, headers=H).get_json()
    assert r["images"][0]["max_delta"] > 0
    spec = client.post("/api/export", json=body, headers=H).get_json()
    assert spec["images"][0] == r["images"][0]["image"]
    base = renderer.seed_styles(g, [seed], 0.7)
    if against_manipulate:  # the exported edit is the one manipulate renders (same styles)
      want = images.to_uint8(manipulate.edited_images(g, base, chan, [5.0], std))[0, 0]
      assert np.abs(edit_spec.replay(g, spec["spec"])[0].astype(int) - want).max() <= 1
    if not channel_map:
      return base, None
    ch = client.post("/api/channel", json={"name": chan, "image": {"seed": seed, "psi": 0.7}}, headers=H).get_json()
    assert ch["name"] == chan and ch["map"].startswith("data:image/png")
  finally:
    ex.close()
  return base, renderer.channel_map(g, base[0], stylespace.parse_name(g.layout, chan))


def _tiny_std(g):
  return np.asarray(sampling.styles_from_seeds(g, range(32), psi=0.7, batch_size=32), np.float64).std(0)


def test_explorer_renders_and_exports_stylegan3_edits(g):
  _explorer_checks(g, _tiny_std(g), 2, "2_3", channel_map=False)


@pytest.mark.slow
def test_explorer_channel_map_on_stylegan3(g):
  base, m = _explorer_checks(g, _tiny_std(g), 2, "2_3")
  # Its channel map (one jvp; 16 px: no pooling) against a central difference of the image.
  c, h = stylespace.parse_name(g.layout, "2_3"), 2e-3
  x = np.repeat(base, 2, 0)
  x[0, c] += h
  x[1, c] -= h
  img = np.asarray(renderer._render(g, x), np.float64)  # pylint: disable=protected-access
  fd = np.abs(img[0] - img[1]).mean(-1) / (2 * h)
  assert m.shape == (16, 16) and fd.max() > 1e-3
  np.testing.assert_allclose(m, fd, atol=2e-2 * fd.max(), rtol=2e-2)


def _verification_checks(tmp_path, g, positions):
  considered = stylespace.considered_indices(g.layout)
  sigma = np.linspace(0.5, 1.5, g.num_style_channels)
  job = V.make_job(
    tmp_path / "v", g, considered, sigma, [5, 6], {"segmenter": "halves"}, segmentation.FFHQ, alphas=(-3.0, 3.0)
  )
  V.run_job(job, g, _halves, positions, rows_per_step=4)
  # Independent path: the edited styles by hand, rendered in one manipulate.render call.
  styles = sampling.styles_from_seeds(g, [5, 6], 0.7, class_idx=job.spec["class_idx"])  # s2: one class
  rows = [styles]
  for p in positions:
    for a in (-3.0, 3.0):
      x = styles.copy()
      x[:, considered[p]] += a * sigma[considered[p]]
      rows.append(x)
  u8 = images.to_uint8(manipulate.render(g, np.concatenate(rows), batch_size=len(rows) * 2)).astype(float)
  base, edited = u8[:2], u8[2:].reshape(len(positions), 2, 2, *u8.shape[1:])
  for i, p in enumerate(positions):
    d = np.abs(edited[i] - base[None]) / 127.5  # (A, N, H, W, C)
    got = job.read(p)
    # Other batch shapes round differently: a few pixel values may land on the next uint8 level.
    np.testing.assert_allclose(got["l1_total"], d.sum((2, 3, 4)).T, rtol=0, atol=3 / 127.5)
    assert np.abs(got["vis_total"] - (d.max(-1) > 0.1).sum((2, 3)).T).max() <= 1
    assert got["l1_total"].max() > 0


def test_verification_on_stylegan3(g, tmp_path):
  _verification_checks(tmp_path, g, [0, 17])


def _ad_checks(tmp_path, g, chan):
  pop = ad_population.population(tmp_path / "ad", g, COLOUR, 16, seed=1000, samples_per_shard=8, batch_size=8)
  u = np.random.default_rng(0).normal(size=g.config.w_dim)
  sigma, std = ad_edits.direction_std(pop["w"], u), pop["s"].std(0)
  edits = [ad_edits.channel_edit(g.layout, [chan], std), ad_edits.w_edit(g, u, sigma, None, "W u")]
  alphas = [1.0, 3.0]
  job = ad.make_job(tmp_path / "ad", "heldout", g, COLOUR, range(3), edits, alphas, images_per_shard=2)
  base, edited = ad.run_and_read(job, g, edits, COLOUR, batch_size=8)
  assert base.shape == (3, 3) and edited.shape == (3, 2, 2, 3)
  # Independent paths: the S edit by hand, the W edit through g.styles(ws + a u); one jitted render.
  z = sampling.z_from_seeds(range(3), g.config.z_dim)
  ws = g.mapping(z, sampling.class_labels(g.config.c_dim, range(3), None) if g.config.c_dim else None)
  un = (u / np.linalg.norm(u) * sigma).astype(np.float32)
  c = stylespace.parse_name(g.layout, chan)
  flat = [np.asarray(flatten_styles(g.styles(ws)))] + [
    np.asarray(flatten_styles(g.styles(ws + a * un))) for a in alphas
  ]
  for a in alphas:
    x = flat[0].copy()
    x[:, c] += a * std[c]
    flat.append(x)
  logits = jax.jit(lambda x: _colour_logits(g.synthesis(unflatten_styles(g.layout, x))))(np.concatenate(flat))
  want = np.asarray(logits).reshape(1 + 2 * len(alphas), 3, 3)
  np.testing.assert_allclose(base, want[0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(edited[:, 1], want[1:3].transpose(1, 0, 2), rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(edited[:, 0], want[3:].transpose(1, 0, 2), rtol=1e-4, atol=1e-5)
  res = ad.evaluate(
    base, edited, edits, [0, 0], alphas, ad_population.logit_std(pop["logits"]), COLOUR.names, x_star=0.0
  )
  assert len(res) == 2 and np.isfinite(res[0]["summary"]["target_change"]).all()


def test_attribute_dependency_on_stylegan3(g, tmp_path):
  _ad_checks(tmp_path, g, "2_3")


def _bank_checks(tmp_path, g):
  clf = ab.AttributeClassifier(COLOUR, {"red": ("hair",), "green_blue": None, "top_bottom": ("hat",)}, np.ones(3, bool))
  cs = ab.CheckSettings(
    num_eval=4, num_exemplars=5, num_reference=20, sizes=(2, 5), num_draws=5, alphas=(10.0,), edit_top=2
  )
  bank = ab.make_bank(tmp_path, g, 60, COLOUR, seed=5, samples_per_shard=30)
  res = ab.run(g, tmp_path, bank, [0, 2], list(COLOUR.names), cs, clf, regions=clf.regions, log=lambda *a: None)
  s = dci_sampling.read_array(bank.codes, "s")
  want = np.asarray(_colour_logits(manipulate.render(g, s[:8])))
  np.testing.assert_allclose(dci_sampling.read_array(bank.logits, "logits")[:8], want, rtol=1e-4, atol=1e-5)
  rows = res["rows"]
  assert [r["attribute"] for r in rows] == ["red", "top_bottom"]
  conv = set(stylespace.names_of(g.layout, stylespace.considered_indices(g.layout)))
  assert all(r["reference_all"] in conv for r in rows)  # never the input's 4 values (not considered)
  assert len(rows[0]["edits"]) == len(cs.alphas) * len({e["channel"] for e in rows[0]["edits"]})


def test_attribute_bank_on_stylegan3(g, tmp_path):
  _bank_checks(tmp_path, g)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["s1", "s2"])
def test_analyses_on_the_fixture_generators(fixtures_dir, tmp_path, name):
  """The same analyses on the 32 px fixtures; the explorer's channel map equals the official map."""
  g = _fixture(fixtures_dir, name)
  ref = np.load(fixtures_dir / "gradmaps_sg3" / f"{name}.npz")
  flat = np.asarray(flatten_styles(g.styles(ref["ws"][:1])))
  considered = stylespace.considered_indices(g.layout)
  for pos in (0, len(considered) // 2, len(considered) - 1):
    np.testing.assert_allclose(renderer.channel_map(g, flat[0], considered[pos], 32), ref["maps"][0, pos], atol=1e-5)
  std = np.asarray(sampling.styles_from_seeds(g, range(16), psi=0.7, batch_size=16), np.float64).std(0)
  _explorer_checks(g, np.maximum(std, 1e-3), 2, "3_5", against_manipulate=True)
  _verification_checks(tmp_path, g, [0, len(considered) - 1])
  _ad_checks(tmp_path, g, "3_5")
  _bank_checks(tmp_path / "bank", g)
