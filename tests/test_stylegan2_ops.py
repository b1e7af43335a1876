"""ops: polyphase up-sampling and demodulation against direct numpy transcriptions."""

import numpy as np
import pytest

from ss_jax.stylegan2 import ops


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
      out += u[:, i : i + oh, j : j + ow] * k[i, j]
  return out


def _conv_transpose_np(x, w):
  """torch conv_transpose2d(stride 2, pad 0) with weight [in, out, k, k] given as HWIO w."""
  n, h, wd, _ = x.shape
  k = w.shape[0]
  out = np.zeros((n, 2 * (h - 1) + k, 2 * (wd - 1) + k, w.shape[3]))
  for i in range(h):
    for j in range(wd):
      out[:, 2 * i : 2 * i + k, 2 * j : 2 * j + k] += np.einsum("nc,abco->nabo", x[:, i, j], w)
  return out


def _fir2d():
  a = np.array([1.0, 3.0, 3.0, 1.0])
  f = np.outer(a, a)
  return f / f.sum()


def test_conv2d_up_matches_transposed_conv_then_blur():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 5, 6, 4)).astype(np.float32)
  w = rng.standard_normal((3, 3, 4, 7)).astype(np.float32)
  ref = _upfirdn2d_np(
    _conv_transpose_np(x.astype(np.float64), w.astype(np.float64)), _fir2d(), up=1, pad0=1, pad1=1, gain=4
  )
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
  ref = 1.0 / np.sqrt((wm.astype(np.float64) ** 2).sum(axis=(1, 2, 3)) + 1e-8)
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


def _conv3x3_np(x, w):
  """'same' 3x3 correlation in float64 numpy."""
  n, h, wd, _ = x.shape
  xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(
    np.einsum("nhwc,co->nhwo", xp[:, i : i + h, j : j + wd], w[i, j].astype(np.float64))
    for i in range(3)
    for j in range(3)
  )


@pytest.mark.parametrize("shape", [(2, 8, 8, 5, 7), (1, 16, 12, 32, 8), (3, 4, 6, 3, 2)])
def test_winograd_conv_matches_float64_reference_as_closely_as_direct_conv(shape):
  n, h, wd, ci, co = shape
  rng = np.random.default_rng(3)
  x = rng.standard_normal((n, h, wd, ci)).astype(np.float32)
  w = (rng.standard_normal((3, 3, ci, co)) / np.sqrt(9 * ci)).astype(np.float32)
  ref = _conv3x3_np(x, w)
  got = np.asarray(ops.conv3x3_winograd(x, w))
  direct_err = np.abs(np.asarray(ops.conv2d(x, w)) - ref).max()
  assert got.shape == ref.shape
  # Same float32 accuracy class as the direct conv (a different summation order).
  assert np.abs(got - ref).max() <= max(4 * direct_err, 1e-6)


def test_winograd_filter_is_g_w_gt():
  w = np.random.default_rng(6).standard_normal((3, 3, 5, 4))
  g = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
  np.testing.assert_allclose(
    np.asarray(ops.winograd_filter(w.astype(np.float32))), np.einsum("ai,ijco,bj->abco", g, w, g), atol=1e-6
  )


def test_conv2d_dispatch_rule(monkeypatch):
  monkeypatch.setattr(ops, "WINOGRAD_MIN_CHANNELS", 256)
  monkeypatch.setattr(ops, "WINOGRAD_MIN_SIDE", 32)
  assert ops.use_winograd((4, 64, 64, 512), (3, 3, 512, 512))
  assert not ops.use_winograd((4, 64, 64, 128), (3, 3, 128, 512))  # narrow input
  assert not ops.use_winograd((4, 16, 16, 512), (3, 3, 512, 512))  # too small
  assert not ops.use_winograd((4, 33, 33, 512), (3, 3, 512, 512))  # odd sides
  assert not ops.use_winograd((4, 64, 64, 512), (1, 1, 512, 512))  # toRGB / 1x1
  monkeypatch.setattr(ops, "WINOGRAD_MIN_CHANNELS", 1)
  monkeypatch.setattr(ops, "WINOGRAD_MIN_SIDE", 8)
  x = np.random.default_rng(4).standard_normal((1, 8, 8, 4)).astype(np.float32)
  w = np.random.default_rng(5).standard_normal((3, 3, 4, 4)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(ops.conv2d(x, w)), _conv3x3_np(x, w), atol=1e-5)
