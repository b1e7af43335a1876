"""Inversion into W / W+ / S: schedules, noise regulariser, recovery, independence, sharding."""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ss_jax import GeneratorConfig
from ss_jax.inversion import codes as inversion_codes
from ss_jax.inversion import optimise as inversion
from ss_jax.inversion import noise as noise_lib

import tiny

# tiny.TINY at 8px (two blocks): the optimisation step compiles in about half the time.
CFG = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=8, channels=(16, 8), mapping_layers=2)

STEPS = 40  # every optimising call below uses it: one compilation per space / setting
PERCEPTUAL_W = 0.5
render = jax.jit(inversion.render)  # eager synthesis is slow on CPU
to_styles = jax.jit(inversion_codes.code_to_styles, static_argnums=1)
regularizer = jax.jit(noise_lib.noise_regularizer)
normalize = jax.jit(noise_lib.normalize_noise)


@pytest.fixture(scope="module")
def setup():
  g = tiny.tiny_generator(0, CFG)
  # tiny.py draws w_avg at random; a trained model's w_avg is the mean of mapping(z).
  z = np.random.RandomState(5).randn(4096, g.config.z_dim).astype(np.float32)
  w = np.asarray(jax.jit(lambda g, z: g.mapping(z)[:, 0])(g, z))
  # Its const noise maps are unit-variance too (as the normalised maps that inversion optimises).
  noise = [noise_lib.normalize_noise(v[None])[0] for v in g.buffers["noise"]]
  g = g.replace(buffers=dict(g.buffers, w_avg=jnp.asarray(w.mean(0)), noise=noise))
  spread = inversion_codes.latent_spread(g, num_samples=2000)
  zs = np.random.RandomState(1).randn(3, g.config.z_dim).astype(np.float32)
  x = np.asarray(jax.jit(lambda g, z: g(z))(g, zs))
  # Image 0 is generated from a known w; image 1, the mean of two generated images, is off the manifold.
  targets = np.stack([x[0], 0.5 * (x[1] + x[2])])
  start_mse = inversion.invert(g, targets, "w", steps=0).losses["mse"]  # renders w_avg
  return g, spread, targets, start_mse


@flax.struct.dataclass
class BlurDistance:
  """Stand-in perceptual metric, a pytree: weighted MSE of 2x2 average-pooled images."""

  weight: jax.Array

  def __call__(self, x, y):
    pool = lambda a: a.reshape(a.shape[0], a.shape[1] // 2, 2, a.shape[2] // 2, 2, -1).mean(axis=(2, 4))
    return self.weight * jnp.mean(jnp.square(pool(x) - pool(y)), axis=(1, 2, 3))


def noise_kwargs():
  """W+ runs also optimise noise maps with a perceptual stand-in (one compilation covers both)."""
  return dict(
    losses=inversion.Losses(mse=1.0, perceptual=PERCEPTUAL_W, noise_reg=1.0),
    perceptual=BlurDistance(jnp.float32(2.0)),
    optimize_noise=True,
  )


@pytest.fixture(scope="module")
def runs(setup):
  g, spread, targets, _ = setup
  return {
    space: inversion.invert(
      g, targets, space, steps=STEPS, spread=spread, **(noise_kwargs() if space == "wplus" else {})
    )
    for space in inversion_codes.SPACES
  }


def test_schedule_matches_formula():
  lr = lambda i: float(inversion.learning_rate(i, 1000, 0.1))
  # ramp-up over the first 5% (t = 0.025 -> half), flat, cosine ramp-down over the last 25%.
  np.testing.assert_allclose(
    [lr(0), lr(25), lr(50), lr(500), lr(750), lr(875), lr(1000)], [0, 0.05, 0.1, 0.1, 0.1, 0.05, 0], atol=1e-7
  )
  t = 0.95
  np.testing.assert_allclose(lr(950), 0.1 * (0.5 - 0.5 * np.cos(np.pi * (1 - t) / 0.25)), rtol=1e-5)
  noise = lambda i: float(inversion.latent_noise_strength(i, 1000))
  np.testing.assert_allclose([noise(0), noise(375), noise(750), noise(900)], [0.05, 0.0125, 0, 0], atol=1e-8)


def test_noise_regularizer():
  rng = np.random.RandomState(0)
  white = np.asarray(normalize(rng.randn(3, 64, 64).astype(np.float32)))
  np.testing.assert_allclose(white.mean(axis=(1, 2)), 0, atol=1e-6)
  np.testing.assert_allclose(np.square(white).mean(axis=(1, 2)), 1, rtol=1e-5)
  ones = np.ones((1, 64, 64), np.float32)
  yy, xx = np.mgrid[:64, :64]
  smooth = np.asarray(normalize(np.sin(2 * np.pi * (xx + yy) / 64)[None].astype(np.float32)))
  reg = np.asarray(regularizer([np.concatenate([white, ones, smooth])]))
  # White noise: ~2 / R^2 per scale (64, 32, 16, 8); a constant map: 2 per scale, 4 scales.
  assert (reg[:3] < 0.2).all() and reg[:3].mean() < 2 * sum(2 / r**2 for r in (64, 32, 16, 8))
  np.testing.assert_allclose(reg[3], 8.0, rtol=1e-6)
  assert reg[4] > 4.0
  # Scales stop at 8x8: a 4x4 or 8x8 map is penalised once; per-image values do not mix.
  np.testing.assert_allclose(regularizer([np.ones((2, 4, 4))]), [2.0, 2.0], rtol=1e-6)
  two = regularizer([white[:2], np.ones((2, 8, 8))])
  np.testing.assert_allclose(two, regularizer([white[:2]]) + 2.0, rtol=1e-6)


def test_latent_spread_is_fixed_by_seed(setup):
  g, spread, _, _ = setup
  again = inversion_codes.latent_spread(g, num_samples=2000, batch_size=300)
  np.testing.assert_allclose(again["s_std"], spread["s_std"], rtol=1e-6)  # float32 batches of another size
  assert again["w_std"] == pytest.approx(spread["w_std"], rel=1e-6)
  other = inversion_codes.latent_spread(g, num_samples=2000, seed=7)
  assert not np.allclose(other["s_std"], spread["s_std"])
  # w_std is NVIDIA's scalar: sqrt(E |w - w_avg|^2) around g.w_avg.
  z = np.random.RandomState(inversion_codes.SPREAD_SEED).randn(2000, g.config.z_dim).astype(np.float32)
  w = np.asarray(g.mapping(z)[:, 0], np.float64)
  assert spread["w_std"] == pytest.approx(np.sqrt(np.square(w - np.asarray(g.w_avg)).sum(1).mean()), rel=1e-5)


@pytest.mark.parametrize("space", inversion_codes.SPACES)
def test_recovers_generated_image(setup, runs, space):
  g, _, targets, start_mse = setup
  res = runs[space]
  assert res.losses["mse"][0] < start_mse[0] / 10, (res.losses["mse"], start_mse)
  assert res.history.shape == (2, STEPS // 10) and list(res.history_steps) == list(range(0, STEPS, 10))
  shape = inversion_codes.code_shape(g, space)
  assert res.code.shape == (2,) + shape and res.styles.shape == (2, g.num_style_channels)
  np.testing.assert_allclose(res.styles, to_styles(g, space, res.code), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(res.images, render(g, res.styles, res.noise), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(res.losses["mse"], np.mean(np.square(res.images - targets), axis=(1, 2, 3)), rtol=1e-4)
  assert (res.noise is None) == (space != "wplus")


def test_s_reaches_lower_loss_than_w_off_manifold(runs):
  assert runs["s"].losses["mse"][1] < 0.8 * runs["w"].losses["mse"][1]  # measured: 0.61x


def test_chunked_equals_unchunked_and_reproducible(setup, runs):
  g, spread, targets, _ = setup
  seen = []
  # runs["w"] used loop="auto" = "host" on CPU: one jitted step per call; "fori": chunks of device loops.
  chunked = inversion.invert(
    g,
    targets,
    "w",
    steps=STEPS,
    spread=spread,
    chunk_size=7,
    loop="fori",
    progress=lambda done, total, latest: seen.append((done, total, latest.shape)),
  )
  assert [d for d, _, _ in seen] == [7, 14, 21, 28, 35, 40] and seen[0][1:] == (STEPS, (2,))
  whole = inversion.invert(g, targets, "w", steps=STEPS, spread=spread, loop="fori")
  np.testing.assert_array_equal(chunked.code, whole.code)  # the same program: bit-identical
  np.testing.assert_array_equal(chunked.history, whole.history)
  np.testing.assert_allclose(chunked.code, runs["w"].code, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(chunked.history, runs["w"].history, rtol=1e-4, atol=1e-5)
  host = inversion.invert(g, targets, "w", steps=STEPS, spread=spread, chunk_size=7)
  np.testing.assert_array_equal(host.code, runs["w"].code)
  other = inversion.invert(g, targets, "w", steps=STEPS, spread=spread, seed=1)
  assert not np.allclose(other.code, runs["w"].code)  # the seed drives the latent noise


def test_each_image_independent_of_its_batch(setup, runs):
  # Image 1 alone, with its id, gets the result it got next to image 0. (Both runs hold one image
  # per fake device; test_sharded_equals_one_device also puts both images in one device batch.)
  g, spread, targets, _ = setup
  alone = inversion.invert(g, targets[1:], "w", steps=STEPS, spread=spread, image_ids=[1])
  np.testing.assert_allclose(alone.code[0], runs["w"].code[1], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(alone.losses["total"][0], runs["w"].losses["total"][1], rtol=1e-4)


def test_init_and_steps_zero(setup, runs):
  g, spread, targets, start_mse = setup
  res = inversion.invert(g, targets, "s", steps=0)
  np.testing.assert_allclose(res.losses["mse"], start_mse, rtol=1e-5)
  assert res.history.shape == (2, 0)
  # Restart from a previous result: 0 steps reproduce it; init may be a tuple of blocks.
  blocks = tuple(np.split(runs["s"].styles, [L.offset for L in g.layout[1:]], axis=1))
  again = inversion.invert(g, targets, "s", steps=0, init=blocks)
  np.testing.assert_allclose(again.losses["mse"], runs["s"].losses["mse"], rtol=1e-5)


def test_noise_maps_and_perceptual(setup, runs):
  g, _, targets, _ = setup
  res = runs["wplus"]
  assert len(res.noise) == len(g.buffers["noise"])
  for v, buf in zip(res.noise, g.buffers["noise"]):
    assert v.shape == (2,) + buf.shape
    np.testing.assert_allclose(v.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(np.square(v).mean(axis=(1, 2)), 1, rtol=1e-4)
    assert not np.allclose(v[0], buf, atol=1e-3)  # optimised away from the const start
  # Reported terms: the stand-in's distance and the regulariser of the returned maps.
  blur = jax.jit(lambda x, y: BlurDistance(jnp.float32(2.0))(x, y))
  np.testing.assert_allclose(res.losses["perceptual"], blur(res.images, targets), rtol=1e-4)
  np.testing.assert_allclose(res.losses["noise_reg"], regularizer(res.noise), rtol=1e-4)
  np.testing.assert_allclose(
    res.losses["total"],
    res.losses["mse"] + PERCEPTUAL_W * res.losses["perceptual"] + res.losses["noise_reg"],
    rtol=1e-5,
  )
  start_reg = regularizer([np.asarray(b)[None] for b in g.buffers["noise"]])
  assert (res.losses["noise_reg"] < start_reg).all()
  # with_noise(g, noise, i) is the generator that renders image i.
  x1 = render(noise_lib.with_noise(g, res.noise, 1), res.styles[1:])
  np.testing.assert_allclose(res.images[1:], x1, rtol=1e-4, atol=1e-4)


def test_sharded_equals_one_device(setup, runs):
  g, spread, targets, _ = setup
  assert jax.device_count() == 4  # conftest's fake CPU devices: 2 images padded to 4, one per device
  one = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  single = inversion.invert(g, targets, "wplus", steps=STEPS, spread=spread, mesh=one, **noise_kwargs())
  np.testing.assert_allclose(single.code, runs["wplus"].code, rtol=1e-4, atol=1e-4)
  for a, b in zip(single.noise, runs["wplus"].noise):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(single.losses["total"], runs["wplus"].losses["total"], rtol=1e-3)


def test_errors(setup):
  g, spread, targets, _ = setup
  with pytest.raises(ValueError, match="space must be one of"):
    inversion.invert(g, targets, "z")
  with pytest.raises(ValueError, match=r"images must have shape \(N, 8, 8, 3\)"):
    inversion.invert(g, targets[:, :4], "w")
  with pytest.raises(ValueError, match="needs a perceptual callable"):
    inversion.invert(g, targets, "w", losses=inversion.Losses(perceptual=1.0))
  with pytest.raises(ValueError, match="init must be a wplus code"):
    inversion.invert(g, targets, "wplus", init=np.zeros((2, 16), np.float32))
  with pytest.raises(ValueError, match="a code of space .s. must have shape"):
    inversion_codes.code_to_styles(g, "s", np.zeros((2, 5)))
  with pytest.raises(ValueError, match="image_ids must have 2 entries"):
    inversion.invert(g, targets, "w", image_ids=[0])
