"""ops: polyphase up-sampling and demodulation against direct numpy transcriptions."""
import numpy as np
import pytest

from ss_jax import ops


def _upfirdn2d_np(x, f2d, up, pad0, pad1, gain):
  """Direct upfirdn2d on NHWC numpy: zero insertion, padding, true 2-D convolution."""
  n, h, w, c = x.shape
  u = np.zeros((n, h * up, w * up, c), np.float64)
  u[:, ::up, ::up] = x
  u = np.pad(u, ((0, 0), (pad0, pad1), (pad0, pad1), (0, 0)))
  k = f2d[::-1, ::-1] * gain
  kh, kw = k.shape
  oh, ow = u.shape[1] - kh + 1, u.shape[2] - kw + 1
  out = np.zeros((n, oh, ow, c))
  for i in range(kh):
    for j in range(kw):
      out += u[:, i:i + oh, j:j + ow] * k[i, j]
  return out


def _conv_transpose_np(x, w):
  """torch conv_transpose2d(stride 2, pad 0) with weight [in, out, k, k] given as HWIO w."""
  n, h, wd, _ = x.shape
  k = w.shape[0]
  out = np.zeros((n, 2 * (h - 1) + k, 2 * (wd - 1) + k, w.shape[3]))
  for i in range(h):
    for j in range(wd):
      out[:, 2 * i:2 * i + k, 2 * j:2 * j + k] += np.einsum("nc,abco->nabo", x[:, i, j], w)
  return out


def _fir2d():
  a = np.array([1.0, 3.0, 3.0, 1.0])
  f = np.outer(a, a)
  return f / f.sum()


def test_conv2d_up_matches_transposed_conv_then_blur():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 5, 6, 4)).astype(np.float32)
  w = rng.standard_normal((3, 3, 4, 7)).astype(np.float32)
  ref = _upfirdn2d_np(_conv_transpose_np(x.astype(np.float64), w.astype(np.float64)),
                      _fir2d(), up=1, pad0=1, pad1=1, gain=4)
  got = np.asarray(ops.conv2d_up(x, w, precision="highest"))
  assert got.shape == (2, 10, 12, 7)
  np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-5)


def test_upsample2d_matches_upfirdn2d():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((3, 4, 5, 2)).astype(np.float32)
  ref = _upfirdn2d_np(x.astype(np.float64), _fir2d(), up=2, pad0=2, pad1=1, gain=4)
  np.testing.assert_allclose(np.asarray(ops.upsample2d(x)), ref, atol=1e-6)


def test_demod_coefficients_match_explicit_weight_modulation():
  rng = np.random.default_rng(2)
  w = rng.standard_normal((3, 3, 5, 6)).astype(np.float32)
  s = rng.standard_normal((4, 5)).astype(np.float32)
  wm = w[None] * s[:, None, None, :, None]
  ref = 1.0 / np.sqrt((wm.astype(np.float64)**2).sum(axis=(1, 2, 3)) + 1e-8)
  np.testing.assert_allclose(np.asarray(ops.demod_coefficients(w, s, precision="highest")), ref, rtol=1e-5)


@pytest.mark.parametrize("act,gain,clamp", [("lrelu", 1.0, None), ("lrelu", 0.5, 0.3), ("linear", 1.0, 1.0)])
def test_bias_act(act, gain, clamp):
  x = np.linspace(-3, 3, 13, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
  b = np.array([0.1, -0.2], np.float32)
  y = x + b
  if act == "lrelu":
    y = np.where(y >= 0, y, 0.2 * y) * np.sqrt(2.0)
  y = y * gain
  if clamp is not None:
    y = np.clip(y, -clamp, clamp)
  np.testing.assert_allclose(np.asarray(ops.bias_act(x, b, act, gain, clamp)), y, rtol=1e-6)
