"""Tests of ss_jax.inversion.encoder_training: data, normaliser, loss decrease, resume, export."""

import json

import jax
import numpy as np
import pytest

from ss_jax.inversion import encoder as enc_lib
from ss_jax.inversion import encoder_training as et
from ss_jax.inversion import encoder_trainer
from ss_jax.runtime import jobs
from ss_jax.stylespace import stats
from tests.tiny import TINY, tiny_encoder_config, tiny_generator

STEPS = 40
# The image loss is on (on half of each batch), so one compilation covers every term.
SETTINGS = et.TrainSettings(
  steps=STEPS, batch_size=8, learning_rate=3e-3, warmup_steps=5, image_weight=2.0, image_batch=4, normaliser_samples=256
)
QUIET = dict(log=lambda *a: None, eval_images=0, log_every_s=0.0)


@pytest.fixture(scope="module")
def g():
  return tiny_generator()


@pytest.fixture(scope="module")
def config(g):
  return tiny_encoder_config(g)


@pytest.fixture(scope="module")
def straight(g, config, tmp_path_factory):
  """A STEPS-step run in one go: (workdir, Encoder, meta)."""
  d = tmp_path_factory.mktemp("straight")
  enc, meta = encoder_trainer.train(g, d, SETTINGS, config, **QUIET)
  return d, enc, meta


def _records(workdir):
  lines = (workdir / encoder_trainer.METRICS_FILE).read_text().splitlines()
  return [json.loads(l) for l in lines if l.strip()]


def test_latents_are_a_pure_function_of_the_sample_index():
  s = et.TrainSettings(batch_size=4, psi_min=0.5, psi_max=1.0, mixing_prob=0.5)
  a = et.sample_latents(np.arange(10), 16, 6, s)
  b = et.sample_latents(np.arange(3, 7), 16, 6, s)
  for k in a:
    np.testing.assert_array_equal(a[k][3:7], b[k])
  assert a["z1"].dtype == np.float32 and a["cutoff"].dtype == np.int32
  np.testing.assert_array_equal(a["z1"][0], np.random.RandomState(et.TRAIN_Z_OFFSET).randn(16).astype(np.float32))
  assert ((a["cutoff"] >= 1) & (a["cutoff"] <= 6)).all() and (a["cutoff"] < 6).any()
  assert ((a["psi"] >= 0.5) & (a["psi"] <= 1.0)).all()
  assert (et.sample_latents(np.arange(10), 16, 6, s, mixing_prob=0.0)["cutoff"] == 6).all()
  # reuse: consecutive steps share a batch; held-out samples differ from training ones.
  np.testing.assert_array_equal(et.step_latents(2, s, TINY)["z1"], et.step_latents(3, s, TINY)["z1"])
  assert not np.array_equal(et.step_latents(2, s, TINY)["z1"], et.step_latents(4, s, TINY)["z1"])
  assert not np.array_equal(et.heldout_latents(4, s, TINY)["z1"], et.step_latents(0, s, TINY)["z1"])


def test_make_pairs_matches_the_generator(g):
  s = et.TrainSettings(mixing_prob=0.5)
  lat = et.sample_latents(np.arange(8), TINY.z_dim, TINY.num_ws, s)  # the training batch shape
  images, flat_s, ws = jax.device_get(et._make_pairs_jit(g, lat))
  assert images.shape == (8, 16, 16, 3) and flat_s.shape == (8, g.num_style_channels)
  # References through the module's other jitted helpers (compiled once for all tests).
  ws1, ws2 = np.asarray(et._mapping_jit(g, lat["z1"])), np.asarray(et._mapping_jit(g, lat["z2"]))
  for i, c in enumerate(lat["cutoff"]):
    np.testing.assert_allclose(ws[i, :c], np.broadcast_to(ws1[i], (c, TINY.w_dim)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ws[i, c:], np.broadcast_to(ws2[i], (6 - c, TINY.w_dim)), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(flat_s, np.asarray(et._styles_jit(g, ws)), rtol=1e-6, atol=1e-6)
  x_s, x_w = jax.device_get(et._reconstruct(g, flat_s, ws))
  np.testing.assert_allclose(images, x_s, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(images, x_w, rtol=1e-5, atol=1e-5)


def test_normaliser_matches_population_stats(g):
  norm = et.compute_normaliser(g, 64, seed=5)
  ref = stats.population_stats(g, 64, psi=1.0, seed=5)
  np.testing.assert_allclose(norm.s_mean, ref["mean"], rtol=1e-5)
  np.testing.assert_allclose(norm.s_std, ref["std"], rtol=1e-5)
  w = np.asarray(
    et._mapping_jit(g, np.stack([np.random.RandomState(5 + i).randn(TINY.z_dim) for i in range(64)]).astype(np.float32))
  )
  np.testing.assert_allclose(norm.w_std, np.sqrt(np.mean((w - g.w_avg) ** 2, 0)), rtol=1e-4)
  np.testing.assert_array_equal(norm.w_avg, np.asarray(g.w_avg))


def test_training_loss_decreases(straight):
  d, enc, meta = straight
  assert meta["step"] == STEPS and meta["images_seen"] == STEPS * SETTINGS.batch_size
  recs = [r for r in _records(d) if "loss" in r]
  assert len(recs) >= STEPS // 2
  first = np.mean([r["loss"] for r in recs[:3]])
  last = np.mean([r["loss"] for r in recs[-3:]])
  assert first > 1.5 and last < 0.85 * first, (first, last)
  for r in recs:  # loss = s_mse + wplus_mse + image_weight * image_mse
    np.testing.assert_allclose(r["loss"], r["s_mse"] + r["wplus_mse"] + 2.0 * r["image_mse"], rtol=1e-5)
  assert np.mean([r["image_mse"] for r in recs[-3:]]) < np.mean([r["image_mse"] for r in recs[:3]])


def test_resume_continues_bitwise(g, config, straight, tmp_path):
  _, full, _ = straight
  d = tmp_path / "split"
  encoder_trainer.train(g, d, SETTINGS, config, max_steps=STEPS // 2 + 1, **QUIET)  # stops mid-reuse block
  enc, meta = encoder_trainer.train(g, d, SETTINGS, config, **QUIET)
  assert meta["step"] == STEPS
  for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(enc.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # A new step count is accepted (the schedule follows it); other settings or another
  # generator are refused.
  longer = et.TrainSettings(**dict(SETTINGS.to_dict(), steps=STEPS + 10))
  _, meta = encoder_trainer.train(g, d, longer, config, max_steps=STEPS, **QUIET)
  assert meta["step"] == STEPS and meta["steps_history"] == [[0, STEPS], [STEPS, STEPS + 10]]
  with pytest.raises(jobs.SettingsMismatch, match="learning_rate"):
    encoder_trainer.train(g, d, et.TrainSettings(**dict(SETTINGS.to_dict(), learning_rate=1e-3)), config, **QUIET)
  with pytest.raises(jobs.SettingsMismatch, match="generator_fingerprint"):
    encoder_trainer.train(tiny_generator(seed=1), d, SETTINGS, config, **QUIET)


def test_time_budget_checkpoints_and_stops(g, config, tmp_path):
  enc, meta = encoder_trainer.train(g, tmp_path, SETTINGS, config, max_seconds=0.0, **QUIET)
  assert meta["step"] == 0
  assert (tmp_path / encoder_trainer.CKPT_DIR).is_dir()


def test_export_and_metrics(g, straight, tmp_path):
  d, _, _ = straight
  out = tmp_path / "exported"
  metrics = encoder_trainer.export(d, out, g, eval_images=8, render_images=0, command="test", log=lambda *a: None)
  m = metrics["generated"]
  assert set(m) >= {"s_nmse", "wplus_nmse", "recon_mse_s", "recon_mse_wplus", "recon_mse_wavg"}
  assert 0 < m["s_nmse"] < 1.0, m  # learned something on held-out samples
  enc = enc_lib.load_encoder(out, generator=g)
  training = enc.info["training"]
  assert training["step"] == STEPS and training["images_seen"] == STEPS * SETTINGS.batch_size
  assert training["export_command"] == "test" and training["settings"]["steps"] == STEPS
  grid = et.comparison_grid(enc, g, et.generated_heldout(g, 8, SETTINGS)[0])
  assert grid.shape == (4 * 16, 8 * 16, 3) and grid.dtype == np.uint8
