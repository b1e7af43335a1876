"""StyleGAN2 trainer: discriminator ops, train step, resume, export, multi-device mesh.

Everything uses configs.smoke() (16 px) so the few step compilations are
shared across tests (make_train_step caches them per config and mesh).
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ss_jax
from ss_jax.train import configs
from ss_jax.train import data as data_lib
from ss_jax.train import discriminator as disc
from ss_jax.train import loop
from ss_jax.train import step as step_lib

FAST_COMPILE = step_lib.FAST_COMPILE


def _leaves_close(a, b, rtol=0.0, atol=0.0):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def cfg():
  return configs.smoke()


@pytest.fixture(scope="module")
def first_step(cfg):
  """(state0, state1, metrics) of one R1 step on a 1-device mesh."""
  mesh = step_lib.make_mesh(cfg.batch_size, jax.devices()[:1])
  train_step = step_lib.make_train_step(cfg, mesh, FAST_COMPILE)
  state0 = train_step.init()
  real = data_lib.toyfaces_source(cfg.resolution)(data_lib.step_seeds(0, cfg.batch_size, cfg.data_seed_offset))
  state1, metrics = train_step(state0, real, host_step=0)
  main1, main_metrics = train_step.main(state0, train_step.put_batch(real))
  return dict(
    state0=state0,
    state1=jax.device_get(state1),
    metrics=jax.device_get(metrics),
    real=real,
    main1=jax.device_get(main1),
    main_metrics=jax.device_get(main_metrics),
  )


def test_blur_and_downsample_match_direct_fir():
  x = np.random.RandomState(0).randn(2, 8, 8, 3).astype(np.float32)
  f = np.array([1, 3, 3, 1], np.float64)
  k = np.outer(f, f) / f.sum() ** 2
  xp = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
  ref = np.zeros((2, 9, 9, 3))
  for i in range(9):
    for j in range(9):
      ref[:, i, j] = np.einsum("nhwc,hw->nc", xp[:, i : i + 4, j : j + 4], k)
  np.testing.assert_allclose(disc.blur(jnp.asarray(x), (1, 3, 3, 1), 2), ref, atol=1e-5)
  # down-sampling = blur with 1 pixel of padding, even outputs
  ref1 = ref[:, 1:-1, 1:-1][:, ::2, ::2]
  np.testing.assert_allclose(disc.downsample2d(jnp.asarray(x), (1, 3, 3, 1)), ref1, atol=1e-5)


def test_minibatch_stddev_groups_consecutive_samples():
  x = jnp.asarray(np.random.RandomState(1).randn(8, 2, 2, 3), jnp.float32)
  y = disc.minibatch_stddev(x, 4, 1)
  assert y.shape == (8, 2, 2, 4)
  g0 = np.asarray(x[:4])
  want = np.mean(np.sqrt(np.var(g0, axis=0) + 1e-8))
  np.testing.assert_allclose(np.asarray(y[:4, :, :, 3]), want, rtol=1e-5)


def test_model_shapes_and_default_size(cfg):
  dcfg = cfg.discriminator
  params = jax.eval_shape(lambda: disc.init_params(dcfg, jax.random.PRNGKey(0)))
  logits = jax.eval_shape(lambda p: disc.discriminator(dcfg, p, jnp.zeros((4, 16, 16, 3))), params)
  assert logits.shape == (4,)
  full = configs.toyfaces_default()
  g_params, _ = jax.eval_shape(lambda: ss_jax.stylegan2.generator.init_params(full.generator, jax.random.PRNGKey(0)))
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(g_params))
  assert n * 4 <= 5 * 2**20, f"default generator is {n * 4 / 2**20:.2f} MiB"


def test_one_step_is_finite_and_updates_everything(first_step):
  state0, state1, metrics = first_step["state0"], first_step["state1"], first_step["metrics"]
  assert set(metrics) == {"g_loss", "d_loss", "d_real", "d_fake", "r1"}
  assert all(np.isfinite(v) for v in metrics.values())
  assert int(state1.step) == 1
  for name in ("g_params", "d_params", "g_ema"):
    before = np.concatenate([np.ravel(x) for x in jax.tree.leaves(getattr(state0, name))])
    after = np.concatenate([np.ravel(x) for x in jax.tree.leaves(getattr(state1, name))])
    assert np.isfinite(after).all()
    assert not np.array_equal(before, after), name
  # EMA ramp-up starts at beta = 0: the first EMA equals the updated weights.
  _leaves_close(state1.g_ema, state1.g_params)
  assert not np.array_equal(np.asarray(state0.rng), np.asarray(state1.rng))


def test_step_on_four_devices_matches_one(first_step, cfg):
  if jax.device_count() < 4:
    pytest.skip("needs 4 (fake) devices")
  mesh = step_lib.make_mesh(cfg.batch_size, jax.devices()[:4])
  assert mesh.devices.size == 4
  train_step = step_lib.make_train_step(cfg, mesh, FAST_COMPILE)
  # The main step (the R1 step is the same D code on the same sharded reals).
  out, m4 = train_step.main(train_step.put_state(first_step["state0"]), train_step.put_batch(first_step["real"]))
  state1, metrics = first_step["main1"], first_step["main_metrics"]
  assert len(out.g_params["synthesis"]["const"].sharding.device_set) == 4
  for k in metrics:
    np.testing.assert_allclose(m4[k], metrics[k], rtol=1e-4, atol=1e-5)
  # Adam's first step is ~lr * sign(g): compare with a tolerance well under lr.
  _leaves_close(jax.device_get(out.g_params), state1.g_params, atol=2e-4)
  _leaves_close(jax.device_get(out.d_params), state1.d_params, atol=2e-4)


def test_resume_matches_uninterrupted_run_and_exports(cfg, tmp_path):
  kw = dict(
    log_every_s=0.0,
    sample_every_kimg=None,
    devices=jax.devices()[:1],
    compiler_options=FAST_COMPILE,
    log=lambda *a: None,
  )
  full, _ = loop.train(cfg, tmp_path / "full", max_steps=3, **kw)
  part, meta = loop.train(cfg, tmp_path / "split", max_steps=2, **kw)
  assert meta["step"] == 2
  resumed, meta = loop.train(cfg, tmp_path / "split", max_steps=3, command="test", **kw)
  assert meta["step"] == 3 and meta["commands"] == ["test"]
  # Bitwise on CPU: same data, keys and compiled steps.
  _leaves_close(jax.device_get(resumed), jax.device_get(full))
  assert sorted(p.name for p in (tmp_path / "split" / "checkpoints").iterdir()) == ["2", "3"]
  lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["step"] for l in lines] == [1, 2, 3]
  assert (tmp_path / "split" / "samples" / "fakes_step00000003.png").is_file()

  # A different trajectory-relevant config must not resume the run.
  with pytest.raises(ValueError, match="batch_size"):
    loop.train(cfg.replace(batch_size=4), tmp_path / "split", max_steps=4, **kw)

  out = tmp_path / "exported"
  loop.export_latest(tmp_path / "split", out, source={"command": "pytest"}, w_avg_samples=2000)
  meta_json = json.loads((out / "config.json").read_text())
  assert meta_json["source"]["step"] == 3 and meta_json["source"]["command"] == "pytest"
  g = ss_jax.load_generator(out)
  assert g.config == cfg.generator
  _leaves_close(g.params, jax.device_get(full.g_ema))
  assert np.abs(np.asarray(g.w_avg)).sum() > 0
  img = jax.jit(lambda g, z: g(z, psi=0.7))(g, jax.random.normal(jax.random.PRNGKey(3), (2, 32)))
  assert img.shape == (2, 16, 16, 3) and np.isfinite(np.asarray(img)).all()


def test_time_budget_stops_and_checkpoints(cfg, tmp_path):
  _, meta = loop.train(
    cfg, tmp_path, max_minutes=0.0, devices=jax.devices()[:1], compiler_options=FAST_COMPILE, log=lambda *a: None
  )
  assert meta["step"] == 0
  assert (tmp_path / "checkpoints" / "0").is_dir()


def test_prefetcher_is_ordered_and_deterministic():
  fn = lambda seeds: np.broadcast_to((seeds % 251).astype(np.uint8)[:, None, None, None], (len(seeds), 2, 2, 3))
  with data_lib.Prefetcher(fn, 5, 4, 100, workers=2) as p:
    batches = [p.next() for _ in range(3)]
  for i, b in enumerate(batches):
    np.testing.assert_array_equal(b[:, 0, 0, 0], (100 + (5 + i) * 4 + np.arange(4)) % 251)
