"""BiSeNet face parser: parity with the official forward (ref.npz), converter, segmenter, folder tool."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from converters import bisenet as conv
from ss_jax.parser import checkpoint
from ss_jax.stylegan2.checkpoint import load_checkpoint
from ss_jax.parser import bisenet, face_parser
from ss_jax.stylespace import segmentation
from converters.io import CheckpointError, read_torch_file

ATOL = 1e-4  # README: suggested parity tolerance on every float array
MARGIN = 1e-3  # labels compared where the reference top-2 logit gap is at least this


def nchw(a):
  return np.transpose(np.asarray(a), (0, 3, 1, 2))


def margin(logits_nchw):
  s = np.sort(logits_nchw, axis=1)
  return s[:, -1] - s[:, -2]


@pytest.fixture(scope="module")
def fx(fixtures_dir):
  d = fixtures_dir / "bisenet"
  if not (d / "ref.npz").is_file():
    pytest.skip(f"BiSeNet fixture missing: {d}")
  return d


@pytest.fixture(scope="module")
def ref(fx):
  with np.load(fx / "ref.npz") as z:
    return dict(z)


@pytest.fixture(scope="module")
def state_dict(fx):
  return read_torch_file(fx / "bisenet_random.pth")


@pytest.fixture(scope="module")
def params(state_dict, fx):
  return checkpoint.params_from_state_dict(state_dict, fx / "bisenet_random.pth")[0]


@pytest.fixture(scope="module")
def outputs(params, ref):
  """One compiled forward (with features) on the reference input, shared by the parity tests."""
  fn = jax.jit(lambda p, x: bisenet.forward(p, x, return_features=True))
  out, out16, out32, feats = fn(params, np.transpose(ref["input_norm"], (0, 2, 3, 1)))
  return {
    "logits": out,
    "logits_out16": out16,
    "logits_out32": out32,
    "feat_res32": feats["feat32"],
    "head_lowres": feats["head_lowres"],
    "head_lowres_out16": feats["head_lowres_out16"],
    "head_lowres_out32": feats["head_lowres_out32"],
  }


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize(
  "key",
  ["logits", "logits_out16", "logits_out32", "head_lowres", "head_lowres_out16", "head_lowres_out32", "feat_res32"],
)
def test_outputs_match_official_forward(outputs, ref, key):
  got = nchw(outputs[key])
  assert got.shape == ref[key].shape
  err = float(np.abs(got - ref[key]).max())
  print(f"{key}: max abs error {err:.2e}")
  assert err <= ATOL


@pytest.mark.parametrize("suffix", ["", "_out16", "_out32"])
def test_labels_match_where_decided(outputs, ref, suffix):
  labels = np.argmax(nchw(outputs["logits" + suffix]), axis=1)
  decided = margin(ref["logits" + suffix]) >= MARGIN
  assert decided.mean() > 0.99
  np.testing.assert_array_equal(labels[decided], ref["labels" + suffix][decided])


def test_preprocess_matches_totensor_normalize(ref):
  want = np.transpose(ref["input_norm"], (0, 2, 3, 1))
  u8 = ref["input_uint8"]
  for images in (u8, u8.astype(np.float32) / 127.5 - 1.0):  # uint8, and [-1, 1] as generated
    got = np.asarray(face_parser.preprocess(images, input_size=128))
    # XLA's float32 division on CPU may differ from IEEE by an ulp (|x| <= 2.7 here).
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
  "src,dst",
  [((64, 64), (32, 32)), ((96, 96), (32, 32)), ((16, 16), (32, 32)), ((32, 24), (32, 32)), ((40, 40), (40, 40))],
)
def test_resize_matches_pil_bilinear(src, dst):
  rng = np.random.default_rng(sum(src))
  im = rng.integers(0, 256, src + (3,), dtype=np.uint8)
  want = np.asarray(Image.fromarray(im).resize(dst[::-1], Image.BILINEAR))
  got = np.asarray(face_parser.pil_bilinear_resize(im[None].astype(np.float32), dst))[0]
  np.testing.assert_array_equal(got.astype(np.uint8), want)


# ----------------------------------------------------------------------------- building blocks


def test_align_corners_bilinear_matches_formula():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
  got = np.asarray(bisenet.resize_bilinear_align_corners(x, (9, 13)))
  ys, xs = np.arange(9) * 4 / 8, np.arange(13) * 6 / 12  # dst * (in - 1) / (out - 1)
  y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
  y1, x1 = np.minimum(y0 + 1, 4), np.minimum(x0 + 1, 6)
  ly, lx = (ys - y0)[None, :, None, None], (xs - x0)[None, None, :, None]
  xd = x.astype(np.float64)
  want = (1 - ly) * ((1 - lx) * xd[:, y0][:, :, x0] + lx * xd[:, y0][:, :, x1]) + ly * (
    (1 - lx) * xd[:, y1][:, :, x0] + lx * xd[:, y1][:, :, x1]
  )
  np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_array_equal(got[:, [0, -1]][:, :, [0, -1]], x[:, [0, -1]][:, :, [0, -1]])


def test_nearest_resize_is_repeat_or_broadcast():
  x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
  np.testing.assert_array_equal(bisenet.resize_nearest(x, (8, 8)), x.repeat(2, 1).repeat(2, 2))
  np.testing.assert_array_equal(bisenet.resize_nearest(x[:, :1, :1], (4, 4)), np.broadcast_to(x[:, :1, :1], x.shape))


def test_conv_specs_cover_the_state_dict(fx):
  entries = json.loads((fx / "keys.json").read_text())
  shapes = {e["key"]: tuple(e["shape"]) for e in entries}
  specs = bisenet.conv_specs()
  assert len(specs) == 36
  used = set()
  for s in specs:
    assert shapes[f"{s.name}.weight"] == (s.c_out, s.c_in, s.k, s.k)
    used.add(f"{s.name}.weight")
    if s.bn:
      used |= {f"{s.bn}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
  assert used == set(shapes)


def test_fold_batchnorm_is_conv_then_bn():
  rng = np.random.default_rng(1)
  w = rng.standard_normal((4, 3, 1, 1))
  g, b, m, v = rng.uniform(0.5, 2, 4), rng.standard_normal(4), rng.standard_normal(4), rng.uniform(0.5, 2, 4)
  x = rng.standard_normal((10, 3))
  want = (x @ w[:, :, 0, 0].T - m) / np.sqrt(v + 1e-5) * g + b
  wf, bf = bisenet.fold_batchnorm(w, g, b, m, v)
  np.testing.assert_allclose(x @ wf[0, 0] + bf, want, rtol=1e-5, atol=1e-5)


def test_input_size_must_divide_by_32(params):
  with pytest.raises(ValueError, match="multiple of 32"):
    bisenet.forward(params, np.zeros((1, 100, 128, 3), np.float32))


# ----------------------------------------------------------------------------- converter


def test_cuda_tagged_subset_loads_and_equals_big_file(fx, state_dict):
  small = read_torch_file(fx / "bisenet_random_conv_out32_cudatag.pth")
  meta = json.loads((fx / "meta.json").read_text())
  assert list(small) == meta["cuda_tagged_subset"]["keys"]
  for k, v in small.items():
    assert v.dtype == state_dict[k].dtype and v.shape == state_dict[k].shape
    np.testing.assert_array_equal(v, state_dict[k])
  with pytest.raises(CheckpointError, match=r"missing tensor 'cp\.resnet\.conv1\.weight'") as e:
    checkpoint.params_from_state_dict(small, "small.pth")
  assert "\n" not in str(e.value)


def test_state_dict_errors_name_the_tensor(state_dict):
  bad = dict(state_dict)
  del bad["cp.arm16.bn_atten.running_var"]
  with pytest.raises(CheckpointError, match=r"missing tensor 'cp\.arm16\.bn_atten\.running_var'"):
    checkpoint.params_from_state_dict(bad, "x.pth")
  bad = dict(state_dict, **{"ffm.conv1.weight": np.zeros((64, 255, 1, 1), np.float32)})
  with pytest.raises(CheckpointError, match=r"'ffm\.conv1\.weight' has shape \(64, 255, 1, 1\)"):
    checkpoint.params_from_state_dict(bad, "x.pth")
  bad = dict(state_dict, **{"ffm.extra.weight": np.zeros(3, np.float32)})
  with pytest.raises(CheckpointError, match=r"unexpected tensors .* 'ffm\.extra\.weight'"):
    checkpoint.params_from_state_dict(bad, "x.pth")
  with pytest.raises(CheckpointError, match="expected a BiSeNet state dict"):
    checkpoint.params_from_state_dict([1, 2], "x.pth")


def test_prefix_and_num_batches_tracked_are_optional(state_dict, params):
  sd = {"module." + k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
  p2, cfg = checkpoint.params_from_state_dict(sd, "x.pth")
  assert cfg.num_classes == 19
  jax.tree.map(np.testing.assert_array_equal, p2, params)


def test_detection(fx, fixtures_dir):
  assert conv.looks_like_bisenet(fx / "bisenet_random.pth")
  assert conv.looks_like_bisenet(fx / "bisenet_random_conv_out32_cudatag.pth")
  assert not conv.looks_like_bisenet(fx / "ref.npz")
  r1 = fixtures_dir / "stylegan2" / "r1" / "r1.pt"
  if r1.is_file():
    assert not conv.looks_like_bisenet(r1)
  with pytest.raises(CheckpointError, match="face-parser state dict, not a generator"):
    load_checkpoint(fx / "bisenet_random.pth")


def _convert(src, out):
  return subprocess.run(
    [sys.executable, "-m", "converters", str(src), str(out)], capture_output=True, text=True, timeout=300
  )


def test_cli_converts_and_round_trips(fx, params, tmp_path):
  out = tmp_path / "parser"
  proc = _convert(fx / "bisenet_random.pth", out)
  assert proc.returncode == 0, proc.stderr
  assert "classes:         19" in proc.stdout
  meta = json.loads((out / "config.json").read_text())
  assert meta["format"] == "ss-jax-bisenet" and meta["config"] == {"num_classes": 19} and meta["bn_folded"]
  p2, cfg, _ = checkpoint.load_converted(out)
  assert cfg.num_classes == 19
  jax.tree.map(np.testing.assert_array_equal, p2, params)
  assert not list(tmp_path.glob("*.tmp-*"))  # the temporary directory was renamed into place


def test_cli_refuses_partial_state_dict(fx, tmp_path):
  out = tmp_path / "parser"
  proc = _convert(fx / "bisenet_random_conv_out32_cudatag.pth", out)
  assert proc.returncode == 1
  assert proc.stderr.strip().count("\n") == 0
  assert "missing tensor 'cp.resnet.conv1.weight'" in proc.stderr
  assert not out.exists()


# ----------------------------------------------------------------------------- segmenter


@pytest.fixture(scope="module")
def parser128(params):
  return face_parser.FaceParser(params, input_size=128, batch_size=1)  # step = device count


def test_face_parser_labels_sharded_and_padded(parser128, ref):
  order = [0, 1, 0, 1, 0]  # more images than one (padded) batch
  x = ref["input_uint8"][order].astype(np.float32) / 127.5 - 1.0
  labels = parser128.segment(x)
  assert labels.shape == (5, 128, 128) and labels.dtype == np.uint8
  decided = margin(ref["logits"]) >= MARGIN
  for i, j in enumerate(order):
    np.testing.assert_array_equal(labels[i][decided[j]], ref["labels"][j][decided[j]])
  small = parser128.segment(x[:2], resolution=64)
  assert small.shape == (2, 64, 64)
  want = np.argmax(
    np.asarray(jax.image.resize(np.transpose(ref["logits"], (0, 2, 3, 1)), (2, 64, 64, 19), "linear", antialias=True)),
    axis=-1,
  )
  assert (small == want).mean() > 0.99
  assert parser128.segment(x[:0]).shape == (0, 128, 128)


def test_registered_segmenter(monkeypatch, fx):
  assert segmentation._SEGMENTERS["bisenet"][1] == "ffhq"  # pylint: disable=protected-access
  face_parser.default_segmenter.cache_clear()
  monkeypatch.delenv(face_parser.ENV_VAR, raising=False)
  with pytest.raises(FileNotFoundError, match=face_parser.ENV_VAR):
    segmentation.get_segmenter("bisenet")
  monkeypatch.setenv(face_parser.ENV_VAR, str(fx / "bisenet_random.pth"))
  seg, table = segmentation.get_segmenter("bisenet")
  assert isinstance(seg, face_parser.FaceParser) and table == "ffhq" and seg.input_size == 512
  face_parser.default_segmenter.cache_clear()


def test_parse_folder(parser128, ref, tmp_path):
  src = tmp_path / "images"
  src.mkdir()
  for i in range(3):
    Image.fromarray(ref["input_uint8"][i % 2]).save(src / f"seed{i:04d}.png")
  out = face_parser.parse_folder(parser128, src, tmp_path / "out", stream=sys.stdout)
  assert out["images"] == 3
  labels = segmentation.load_label_pngs(tmp_path / "out" / "labels", [0, 1, 2], [0, 1, 2])
  decided = margin(ref["logits"]) >= MARGIN
  for i in range(3):
    np.testing.assert_array_equal(labels[i][decided[i % 2]], ref["labels"][i % 2][decided[i % 2]])
  with Image.open(tmp_path / "out" / "overlays" / "seed0001.png") as im:
    assert im.mode == "RGB" and im.size == (128, 128)
  (src / "broken.png").write_bytes(b"not a png")
  with pytest.raises(ValueError, match="cannot read image .*broken.png"):
    face_parser.parse_folder(parser128, src, tmp_path / "out2")
  assert not (tmp_path / "out2").exists()
  (src / "empty").mkdir()
  with pytest.raises(ValueError, match="no images"):
    face_parser.parse_folder(parser128, src / "empty", tmp_path / "out3")


def test_parse_faces_cli_errors(tmp_path, fx):
  (tmp_path / "imgs").mkdir()
  Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "imgs" / "a.png")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  run = lambda *a: subprocess.run(
    [sys.executable, "-m", "experiments.parse_faces", *a], capture_output=True, text=True, timeout=120, env=env
  )
  proc = run(f"--parser={tmp_path / 'nope.pth'}", f"--images={tmp_path / 'imgs'}", f"--outdir={tmp_path / 'o'}")
  assert proc.returncode != 0 and "face parser not found" in proc.stderr
  (tmp_path / "empty").mkdir()
  proc = run(f"--parser={fx / 'bisenet_random.pth'}", f"--images={tmp_path / 'empty'}", f"--outdir={tmp_path / 'o'}")
  assert proc.returncode != 0 and "no images" in proc.stderr
  assert not (tmp_path / "o").exists()
