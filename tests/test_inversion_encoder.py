"""Tests of ss_jax.inversion.encoder: shapes, normalisation, encode, save/load, generator checks, asset."""

import json
import warnings

import jax
import numpy as np
import pytest

from ss_jax.runtime import fingerprints, outputs
from ss_jax.inversion import encoder as enc_lib
from ss_jax.inversion import normaliser
from tests.tiny import TINY, tiny_encoder_config, tiny_generator


@pytest.fixture(scope="module")
def g():
  return tiny_generator()


@pytest.fixture(scope="module")
def config(g):
  return tiny_encoder_config(g)


@pytest.fixture(scope="module")
def norm(g):
  rs = np.random.RandomState(3)
  c, w = g.num_style_channels, g.config.w_dim
  return normaliser.Normaliser.create(rs.randn(c), rs.rand(c) + 0.5, rs.randn(w), rs.rand(w) + 0.5)


@pytest.fixture(scope="module")
def encoder(g, config, norm):
  """An encoder with random (non-zero) heads, so its codes depend on the image."""
  params = enc_lib.fresh_params(config, jax.random.key(0))
  rs = np.random.RandomState(1)
  params = jax.tree_util.tree_map_with_path(
    lambda path, p: (
      rs.randn(*p.shape).astype(np.float32) * 0.1 if "head" in jax.tree_util.keystr(path) else np.asarray(p)
    ),
    params,
  )
  return enc_lib.Encoder(config, params, norm, fingerprints.model_fingerprint(g), {"note": "test"}, batch_size=4)


def _images(n, seed=0, res=16):
  return np.random.RandomState(seed).randint(0, 256, (n, res, res, 3)).astype(np.uint8)


def test_model_shapes_and_fresh_encoder_predicts_the_mean(g, config, norm):
  assert (config.num_ws, config.w_dim, config.resolution) == (TINY.num_ws, TINY.w_dim, 16)
  params = enc_lib.fresh_params(config, jax.random.key(0))
  x = np.zeros((3, 16, 16, 3), np.float32)
  s_norm, w_norm = jax.eval_shape(lambda p, x: enc_lib.predict(config, p, x), params, x)
  assert s_norm.shape == (3, g.num_style_channels) and s_norm.dtype == np.float32
  assert w_norm.shape == (3, TINY.num_ws, TINY.w_dim) and w_norm.dtype == np.float32
  # Zero-initialised heads: a fresh encoder predicts the population mean / w_avg.
  codes = enc_lib.Encoder(config, params, norm).encode(x)
  np.testing.assert_allclose(codes["s"], np.broadcast_to(norm.s_mean, codes["s"].shape))
  np.testing.assert_allclose(codes["wplus"], np.broadcast_to(norm.w_avg, codes["wplus"].shape))


def test_default_toyfaces_config_is_small():
  cfg = enc_lib.EncoderConfig(num_style_channels=1408, num_ws=10, w_dim=128)
  shapes = jax.eval_shape(lambda: enc_lib.init_params(cfg, jax.random.key(0)))
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  assert n * 4 < 4.5e6, n


def test_normalisation_round_trip(norm, g):
  rs = np.random.RandomState(0)
  s = rs.randn(5, g.num_style_channels).astype(np.float32) * 3
  w = rs.randn(5, TINY.num_ws, TINY.w_dim).astype(np.float32)
  np.testing.assert_allclose(normaliser.denormalise_s(norm, normaliser.normalise_s(norm, s)), s, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(
    normaliser.denormalise_wplus(norm, normaliser.normalise_wplus(norm, w)), w, rtol=1e-6, atol=1e-6
  )
  # Each normalised coordinate is (x - mean) / std, W+ rows sharing w_avg / w_std.
  np.testing.assert_allclose(normaliser.normalise_wplus(norm, w)[:, 3], (w[:, 3] - norm.w_avg) / norm.w_std, rtol=1e-6)
  floored = normaliser.Normaliser.create(np.zeros(3), [2.0, 0.0, 1.0], np.zeros(2), [1.0, 1.0])
  assert floored.s_std.min() > 0


def test_encode_uint8_equals_float_and_is_batch_independent(encoder):
  u8 = _images(7)
  a = encoder.encode(u8)
  b = encoder.encode(u8.astype(np.float32) / 127.5 - 1.0)
  assert a["s"].shape == (7, encoder.config.num_style_channels) and a["s"].dtype == np.float32
  assert a["wplus"].shape == (7, TINY.num_ws, TINY.w_dim) and a["wplus"].dtype == np.float32
  np.testing.assert_allclose(a["s"], b["s"], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(a["wplus"], b["wplus"], rtol=1e-6, atol=1e-6)
  assert np.abs(np.diff(a["s"], axis=0)).max() > 1e-3  # codes depend on the image
  # Chunks of 4 (the second padded): images 3..6 encoded together give the same codes.
  np.testing.assert_allclose(encoder.encode(u8[3:])["s"], a["s"][3:], rtol=1e-5, atol=1e-5)
  assert encoder.encode(u8[:0])["wplus"].shape == (0, TINY.num_ws, TINY.w_dim)
  with pytest.raises(ValueError, match="expected images"):
    encoder.encode(u8[..., 0])


def test_save_load_round_trip(encoder, g, tmp_path):
  d = tmp_path / "enc"
  encoder.save(d)
  meta = json.loads((d / "config.json").read_text())
  assert meta["format"] == enc_lib.FORMAT and meta["extra"] == {"note": "test"}
  assert meta["generator"]["fingerprint"] == fingerprints.model_fingerprint(g)
  loaded = enc_lib.load_encoder(d, generator=g, batch_size=4)
  assert loaded.config == encoder.config and loaded.info == {"note": "test"}
  for a, b in zip(jax.tree.leaves(encoder.params), jax.tree.leaves(loaded.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for k, v in encoder.normaliser.to_arrays().items():
    np.testing.assert_array_equal(v, loaded.normaliser.to_arrays()[k])
  x = _images(3, seed=5)
  np.testing.assert_array_equal(loaded.encode(x)["s"], encoder.encode(x)["s"])
  # Saving again is refused unless asked; then it replaces the directory atomically (no leftovers).
  with pytest.raises(outputs.OutputError, match="--overwrite"):
    encoder.save(d)
  encoder.save(d, overwrite=True)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]


def test_missing_directory_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="no ss-jax encoder"):
    enc_lib.load_encoder(tmp_path / "nothing")


def test_wrong_generator_is_refused_or_warned(encoder, g, tmp_path):
  d = tmp_path / "enc"
  encoder.save(d)
  other = tiny_generator(seed=1)
  with pytest.raises(enc_lib.GeneratorMismatch, match="different generator"):
    enc_lib.load_encoder(d, generator=other)
  with pytest.warns(UserWarning, match="different generator"):
    enc_lib.load_encoder(d, generator=other, on_mismatch="warn")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert encoder.check_generator(g)
  # Other code shapes are refused even with on_mismatch="warn".
  from ss_jax.stylegan2.generator import GeneratorConfig

  wider = tiny_generator(
    cfg=GeneratorConfig(z_dim=16, w_dim=8, img_resolution=16, channels=(16, 16, 8), mapping_layers=2)
  )
  with pytest.raises(enc_lib.GeneratorMismatch, match="num_ws, w_dim"):
    enc_lib.load_encoder(d, generator=wider, on_mismatch="warn")


def _shipped_or_skip():
  if not (enc_lib.ENCODER_DIR / "config.json").is_file():
    pytest.skip("shipped encoder not present")
  import ss_jax
  from ss_jax.runtime import defaults

  return ss_jax.load_generator(defaults.default_checkpoint())


def test_shipped_toyfaces_encoder():
  g = _shipped_or_skip()
  d = enc_lib.ENCODER_DIR
  size = sum(p.stat().st_size for p in d.iterdir())
  assert size < 5e6, size
  meta = json.loads((d / "config.json").read_text())
  training = meta["extra"]["training"]
  assert training["commands"] and training["images_seen"] > 0 and training["train_seconds"] > 0
  gen = meta["extra"]["metrics"]["generated"]
  renders = meta["extra"]["metrics"]["toyfaces_renders"]
  # Recorded held-out metrics (measured: S / W+ nMSE 0.70 / 0.83; image MSE of G(S) and G(W+)
  # 0.08 / 0.10 of G(w_avg)'s on generated images, 0.19 / 0.25 on ToyFaces renders).
  assert gen["s_nmse"] < 0.75 and gen["wplus_nmse"] < 0.9, gen
  assert gen["recon_mse_s"] < 0.1 * gen["recon_mse_wavg"], gen
  assert gen["recon_mse_wplus"] < 0.12 * gen["recon_mse_wavg"], gen
  assert renders["recon_mse_s"] < 0.25 * renders["recon_mse_wavg"], renders
  assert renders["recon_mse_wplus"] < 0.3 * renders["recon_mse_wavg"], renders
  enc = enc_lib.load_encoder(generator=g)  # trained for exactly this generator
  assert enc.config.num_style_channels == g.num_style_channels


@pytest.mark.slow
def test_shipped_toyfaces_encoder_reconstructs_renders():
  g = _shipped_or_skip()
  enc = enc_lib.load_encoder(generator=g)
  # 8 held-out renders: reconstructions much closer than G(w_avg).
  from ss_jax.inversion import encoder_training as et

  m = et.image_metrics(enc, g, et.heldout_renders(8))
  assert m["recon_mse_s"] < 0.4 * m["recon_mse_wavg"], m
  assert m["recon_mse_wplus"] < 0.5 * m["recon_mse_wavg"], m
