"""Generator contract: layout, pytree transforms, noise modes, input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ss_jax
from ss_jax.stylegan2.generator import Generator, GeneratorConfig, config_f, flatten_styles, unflatten_styles


def _tiny(**kw):
  base = dict(z_dim=16, w_dim=16, img_resolution=16, channels=(16, 16, 8), mapping_layers=2)
  base.update(kw)
  return Generator.random(GeneratorConfig(**base), jax.random.PRNGKey(1))


def test_config_f_1024_has_9088_style_channels_in_26_layers():
  layout = ss_jax.style_layout(config_f(1024))
  assert len(layout) == 26
  assert sum(L.channels for L in layout) == 9088
  assert sum(L.channels for L in layout if L.kind == "conv") == 6048
  assert sum(L.channels for L in layout if L.kind == "torgb") == 3040
  # The paper's "6_202" addresses layer 6 = b16 conv1 (toRGB layers counted).
  assert layout[6].name == "b16_conv1" and layout[6].w_index == 4
  assert [L.w_index for L in layout[:5]] == [0, 1, 1, 2, 3]


def test_random_config_f_model_builds_with_9088_channels():
  g = jax.eval_shape(lambda: Generator.random(config_f(1024)))  # shapes only: no 30M-param init
  assert g.num_style_channels == 9088
  assert g.params["synthesis"]["layers"][0]["weight"].shape == (3, 3, 512, 512)
  s = jax.eval_shape(lambda g, ws: g.styles(ws), g, jax.ShapeDtypeStruct((2, 18, 512), jnp.float32))
  assert sum(x.shape[1] for x in s) == 9088
  x = jax.eval_shape(lambda g, s: g.synthesis(s), g, s)
  assert x.shape == (2, 1024, 1024, 3)


@pytest.mark.parametrize("arch", ["skip", "resnet", "orig"])
def test_architectures_produce_images(arch):
  g = _tiny(architecture=arch, img_channels=4)
  x = jax.jit(lambda g, z: g(z))(g, jax.random.normal(jax.random.PRNGKey(0), (2, 16)))
  assert x.shape == (2, 16, 16, 4) and x.dtype == jnp.float32
  assert np.isfinite(np.asarray(x)).all()
  kinds = [L.kind for L in g.layout]
  assert kinds.count("torgb") == (3 if arch == "skip" else 1)  # blocks 4, 8, 16 px


def test_jit_grad_jvp_vmap_over_styles():
  g = _tiny()
  s = g.styles(g.mapping(jax.random.normal(jax.random.PRNGKey(0), (2, 16))))
  img = jax.jit(lambda g, s: g.synthesis(s))(g, s)
  np.testing.assert_allclose(img, g.synthesis(s), atol=1e-5)

  @jax.jit
  def pixel(ch_value):  # one image pixel as a function of one style channel
    s2 = list(s)
    s2[3] = s2[3].at[0, 5].set(ch_value)
    return g.synthesis(s2)[0, 7, 7, 0]

  grad = jax.grad(pixel)(s[3][0, 5])
  h = 1e-2
  fd = (pixel(s[3][0, 5] + h) - pixel(s[3][0, 5] - h)) / (2 * h)
  assert abs(float(grad) - float(fd)) < 1e-2 * max(1.0, abs(float(fd)))
  _, tangent = jax.jvp(pixel, (s[3][0, 5],), (jnp.ones(()),))
  np.testing.assert_allclose(tangent, grad, rtol=1e-4, atol=1e-6)
  batched = jax.vmap(pixel)(s[3][0, 5] + jnp.arange(3.0))
  assert batched.shape == (3,)
  # Gradient w.r.t. the generator pytree itself (params are leaves).
  gp = jax.jit(jax.grad(lambda g: jnp.sum(g.synthesis(s))))(g)
  assert gp.params["synthesis"]["const"].shape == g.params["synthesis"]["const"].shape


def test_w_plus_rows_matter_and_flat_roundtrip():
  g = _tiny()
  z = jax.random.normal(jax.random.PRNGKey(0), (2, 16))
  ws = g.mapping(z)
  ws_plus = ws.at[:, 3].set(g.mapping(-z)[:, 0])
  assert not np.allclose(g.synthesis(g.styles(ws)), g.synthesis(g.styles(ws_plus)))
  s = g.styles(ws_plus)
  back = unflatten_styles(g.layout, flatten_styles(s))
  for a, b in zip(s, back):
    np.testing.assert_array_equal(a, b)


def test_noise_modes():
  g = _tiny()
  g = g.replace(params=jax.tree.map(lambda x: x, g.params))
  layers = g.params["synthesis"]["layers"]
  for p in layers:
    if "noise_strength" in p:
      p["noise_strength"] = jnp.asarray(0.3)
  s = g.styles(g.mapping(jnp.ones((1, 16))))
  const = g.synthesis(s, "const")
  none = g.synthesis(s, "none")
  r1 = g.synthesis(s, "random", key=jax.random.PRNGKey(1))
  r2 = g.synthesis(s, "random", key=jax.random.PRNGKey(2))
  assert not np.allclose(const, none) and not np.allclose(r1, r2)
  np.testing.assert_array_equal(g.synthesis(s, "const"), const)
  with pytest.raises(ValueError, match="PRNG key"):
    g.synthesis(s, "random")
  with pytest.raises(ValueError, match="noise_mode"):
    g.synthesis(s, "fixed")


def test_truncation_moves_toward_w_avg():
  g = _tiny()
  g = g.replace(buffers=dict(g.buffers, w_avg=jnp.full((16,), 0.5)))
  z = jax.random.normal(jax.random.PRNGKey(3), (2, 16))
  ws, wt = g.mapping(z), g.mapping(z, psi=0.0)
  np.testing.assert_allclose(wt, np.full(ws.shape, 0.5), atol=1e-6)
  cut = g.mapping(z, psi=0.0, cutoff=2)
  np.testing.assert_allclose(cut[:, 2:], ws[:, 2:])
  np.testing.assert_allclose(cut[:, :2], 0.5, atol=1e-6)


def test_bad_inputs_raise_clear_errors():
  g = _tiny()
  with pytest.raises(ValueError, match=r"z must have shape \(N, 16\)"):
    g.mapping(jnp.ones((2, 15)))
  with pytest.raises(ValueError, match="ws must have shape"):
    g.styles(jnp.ones((2, 3, 16)))
  s = list(g.styles(g.mapping(jnp.ones((1, 16)))))
  with pytest.raises(ValueError, match="expected 8 style blocks"):
    g.synthesis(s[:-1])
  s[2] = jnp.ones((1, 3))
  with pytest.raises(ValueError, match="b8_conv0"):
    g.synthesis(s)
  with pytest.raises(ValueError, match="conditional"):
    _tiny(c_dim=2).mapping(jnp.ones((1, 16)))
  with pytest.raises(ValueError, match="power of two"):
    GeneratorConfig(z_dim=4, w_dim=4, img_resolution=24, channels=(4, 4, 4))
