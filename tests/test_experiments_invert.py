"""experiments.invert: image reading, outputs, resume, settings guard and one-line errors."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from ss_jax import GeneratorConfig, save_generator
from ss_jax.runtime import images
from ss_jax.inversion import optimise as inversion
from ss_jax.stylespace import stats

import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=8, channels=(16, 8), mapping_layers=2)


def run_binary(*args):
  return subprocess.run(
    [sys.executable, "-m", "experiments.invert", *args], cwd=REPO, capture_output=True, text=True, timeout=300
  )


def last_line(p):
  return p.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """Four 8px-target images: RGB, RGBA, greyscale and a 12x10 JPEG (needs --resize)."""
  d = tmp_path_factory.mktemp("images")
  rng = np.random.RandomState(0)
  rgb = lambda h, w: rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
  Image.fromarray(rgb(8, 8)).save(d / "a_rgb.png")
  Image.fromarray(np.concatenate([rgb(8, 8), np.full((8, 8, 1), 128, np.uint8)], -1), "RGBA").save(d / "b_rgba.png")
  Image.fromarray(rgb(8, 8)[:, :, 0], "L").save(d / "c_grey.png")
  Image.fromarray(rgb(10, 12)).save(d / "d_big.jpg")
  (d / "notes.txt").write_text("not an image")
  return d


# ---------------------------------------------------------------- reading images (ss_jax.runtime.images)


def test_image_files_and_reading(folder, tmp_path):
  files = images.image_files(folder)
  assert [p.name for p in files] == ["a_rgb.png", "b_rgba.png", "c_grey.png", "d_big.jpg"]
  assert images.image_files(folder / "c_grey.png") == [folder / "c_grey.png"]
  x, notes = images.read_image(folder / "a_rgb.png", 8)
  assert x.shape == (8, 8, 3) and x.dtype == np.uint8 and notes == []
  np.testing.assert_array_equal(x, np.asarray(Image.open(folder / "a_rgb.png")))
  x, notes = images.read_image(folder / "b_rgba.png", 8)
  assert x.shape == (8, 8, 3) and notes == ["b_rgba.png: alpha channel dropped"]
  x, notes = images.read_image(folder / "c_grey.png", 8)
  assert x.shape == (8, 8, 3) and notes == ["c_grey.png: greyscale, converted to RGB"]
  np.testing.assert_array_equal(x[..., 0], x[..., 2])
  with pytest.raises(ValueError, match=r"d_big.jpg: image is 12x10 pixels, expected 8x8"):
    images.read_image(folder / "d_big.jpg", 8)
  x, notes = images.read_image(folder / "d_big.jpg", 8, resize=True)
  assert x.shape == (8, 8, 3) and notes == ["d_big.jpg: resized 12x10 -> 8x8 (centre-cropped to a square first)"]
  assert images.check_image(folder / "b_rgba.png", 8) == ["b_rgba.png: alpha channel dropped"]  # header only
  Image.fromarray((np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)).save(tmp_path / "deep.png")
  x, _ = images.read_image(tmp_path / "deep.png", 8)
  assert x.max() == round(63000 / 257)  # 16-bit grey scaled to 8 bits, not clipped
  np.testing.assert_allclose(images.from_uint8(np.array([0, 255], np.uint8)), [-1, 1])


def test_image_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="images not found"):
    images.image_files(tmp_path / "missing")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="no images"):
    images.image_files(tmp_path / "empty")
  (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
  with pytest.raises(ValueError, match="cannot read image .*bad.png"):
    images.read_image(tmp_path / "bad.png")
  with pytest.raises(ValueError, match="cannot read image"):
    images.check_image(tmp_path / "bad.png")
  dup = tmp_path / "dup"
  dup.mkdir()
  for name in ("x.png", "x.jpg"):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(dup / name)
  with pytest.raises(ValueError, match="share the name 'x'"):
    images.image_files(dup)


# ---------------------------------------------------------------- the binary


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  d = tmp_path_factory.mktemp("model")
  g = tiny.tiny_generator(0, CFG)
  save_generator(g, d / "gen")
  std = np.linspace(0.5, 1.5, g.num_style_channels)
  stats.save(d / "stats.npz", {"mean": np.zeros_like(std), "std": std, "count": 64}, g.layout)
  return g, d


def test_binary_end_to_end_and_resume(folder, model, tmp_path):
  g, d = model
  work = tmp_path / "work"
  base = [
    f"--images={folder}",
    f"--workdir={work}",
    f"--checkpoint={d / 'gen'}",
    "--space=s",
    "--steps=10",
    "--lpips=none",
    "--batch_size=2",
    "--history_every=5",
    "--chunk_steps=5",
    "--resize",
  ]
  p = run_binary(*base, "--edit_channels=3_5", f"--stats={d / 'stats.npz'}", "--alphas=-5,0,5")
  assert p.returncode == 0, p.stderr[-3000:]
  for w in (
    "warning: b_rgba.png: alpha channel dropped",
    "warning: c_grey.png: greyscale, converted to RGB",
    "warning: d_big.jpg: resized 12x10 -> 8x8",
  ):
    assert w in p.stderr
  lines = p.stderr.splitlines()
  steps_lines = [x for x in lines if x.startswith("inverting: ")]
  assert steps_lines[0].startswith("inverting: 5/20 steps (") and "incl. compilation" in steps_lines[0]
  assert all("/s, ETA " in x for x in steps_lines[1:]) and steps_lines[-1].startswith("inverting: 20/20 steps")
  finals = [float(x.split("mean total loss ")[1].split()[0]) for x in lines if " done: mean total loss " in x]
  assert len(finals) == 2  # each batch's final loss: what invert.json averages (2 images per batch)
  summary = json.loads((work / "invert.json").read_text())
  np.testing.assert_allclose(np.mean(finals), summary["mean_losses"]["total"], rtol=1e-4)
  out = dict(np.load(work / "codes.npz"))
  names = ["a_rgb.png", "b_rgba.png", "c_grey.png", "d_big.jpg"]
  assert out["names"].tolist() == names and str(out["space"]) == "s" and str(out["mode"]) == "optimise"
  assert out["code"].shape == out["s"].shape == (4, g.num_style_channels)
  np.testing.assert_array_equal(out["code"], out["s"])
  assert out["history"].shape == (4, 2) and out["history_steps"].tolist() == [0, 5]
  assert all(out[f"loss_{k}"].shape == (4,) for k in ("total", "mse", "perceptual", "noise_reg"))
  assert (out["loss_total"] < out["history"][:, 0]).all()
  # The saved codes re-render the saved reconstructions (const noise).
  x = images.to_uint8(jax.jit(inversion.render)(g, out["s"]))
  for name, xi in zip(names, x):
    rec = np.asarray(Image.open(work / "reconstructions" / (name.rsplit(".", 1)[0] + ".png")))
    assert np.abs(rec.astype(int) - xi).max() <= 1
  assert Image.open(work / "reconstructions.png").size[0] > 2 * 64  # two upscaled columns + labels
  assert Image.open(work / "edits.png").size[1] > 4 * 64  # 4 images x 1 channel, upscaled rows
  shards = sorted((work / "invert").glob("shard_*.npz"))
  assert len(shards) == 2
  mtimes = [s.stat().st_mtime_ns for s in shards]

  p = run_binary(*base)  # same settings (edit flags are not part of them): nothing recomputed
  assert p.returncode == 0, p.stderr[-3000:]
  assert "2 batch(es), 2 already done" in p.stderr and "batch 1/2: step" not in p.stderr
  assert [s.stat().st_mtime_ns for s in shards] == mtimes
  np.testing.assert_array_equal(np.load(work / "codes.npz")["s"], out["s"])

  p = run_binary(*[a for a in base if not a.startswith("--steps")], "--steps=11")
  assert p.returncode == 1 and last_line(p).startswith("error: ") and "different settings (steps)" in last_line(p)


def test_binary_errors(folder, model, tmp_path):
  _, d = model
  base = [f"--workdir={tmp_path / 'w'}", f"--checkpoint={d / 'gen'}", "--lpips=none", "--steps=1"]
  p = run_binary(f"--images={folder}", *base)  # d_big.jpg is 12x10 and --resize is not given
  assert p.returncode == 1
  assert last_line(p) == (
    f"error: {folder / 'd_big.jpg'}: image is 12x10 pixels, expected 8x8 (pass --resize to resize)"
  )
  p = run_binary(f"--images={tmp_path / 'nowhere'}", *base)
  assert p.returncode == 1 and last_line(p) == f"error: images not found: {tmp_path / 'nowhere'}"
  # Without the encoder module or its files the encoder modes stop with one line.
  p = run_binary(f"--images={folder / 'a_rgb.png'}", *base, "--mode=encoder", f"--encoder={tmp_path / 'noenc'}")
  assert p.returncode == 1 and last_line(p).startswith("error: ") and "encoder" in last_line(p)
  assert not (tmp_path / "w" / "codes.npz").exists()
