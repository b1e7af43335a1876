"""Report pictures and HTML; end to end through the three binaries on a tiny random generator."""

import html.parser
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ss_jax.stylespace import report, stats
from ss_jax.stylespace import verification_report as vr
from ss_jax import save_generator
from test_stylespace_locally_active import tiny_generator

REPO = pathlib.Path(__file__).resolve().parents[1]


def quadrants(images):
  """Stand-in segmenter: fixed CelebAMask-HQ quadrants (skin, bg / hair, nose)."""
  n, h, w = images.shape[:3]
  lab = np.ones((n, h, w), np.int32)
  lab[:, : h // 2, w // 2 :] = 0
  lab[:, h // 2 :, : w // 2] = 17
  lab[:, h // 2 :, w // 2 :] = 10
  return lab


class _Links(html.parser.HTMLParser):
  """Collects img/a targets and checks that every opened tag of interest is closed."""

  def __init__(self):
    super().__init__()
    self.srcs, self.hrefs, self.ids, self.stack = [], [], set(), []

  def handle_starttag(self, tag, attrs):
    a = dict(attrs)
    if tag == "img":
      self.srcs.append(a["src"])
      assert a.get("alt")
    elif tag == "a":
      self.hrefs.append(a["href"])
    if "id" in a:
      self.ids.add(a["id"])
    if tag in ("table", "tr", "td", "th", "h1", "h2", "p", "pre", "a", "body", "html"):
      self.stack.append(tag)

  def handle_endtag(self, tag):
    if tag in ("table", "tr", "td", "th", "h1", "h2", "p", "pre", "a", "body", "html"):
      assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
      self.stack.pop()


def check_html(path):
  p = _Links()
  p.feed(path.read_text())
  p.close()
  assert not p.stack
  for src in p.srcs:
    assert not src.startswith(("/", "http")) and (path.parent / src).is_file(), src
  for href in p.hrefs:
    assert href.startswith("#") and href[1:] in p.ids, href
  return p


def test_heatmap_and_histogram():
  hm = report.heatmap(np.arange(16.0).reshape(4, 4), size=32)
  assert hm.shape == (32, 32, 3) and hm.dtype == np.uint8
  assert hm[0, 0].sum() < hm[-1, -1].sum()
  assert report.heatmap(np.zeros((4, 4))).max() < 10
  hist = np.array([[1, 0, 2], [0, 0, 0], [4, 1, 0]])
  im = report.histogram_png(hist, [0, 1, 2], ["a", "b", "c"])
  assert im.ndim == 3 and im.shape[2] == 3 and im.dtype == np.uint8


def _bin(name, *args, ok=True):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=f"{REPO}:{REPO / 'tests'}")
  env.pop("XLA_FLAGS", None)
  r = subprocess.run(
    [sys.executable, "-m", f"experiments.{name}", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
  )
  assert (r.returncode == 0) == ok, r.stderr[-3000:]
  return r


def _checkpoint_and_stats(tmp_path):
  """tmp_path/ckpt (the tiny generator) and tmp_path/stats.npz (a random population std) for the binaries."""
  g = tiny_generator()
  save_generator(g, tmp_path / "ckpt")
  rng = np.random.RandomState(0)
  c = g.num_style_channels
  stats.save(tmp_path / "stats.npz", {"mean": rng.rand(c), "std": rng.rand(c) + 0.5, "count": 10}, g.layout)


def test_binaries_end_to_end(tmp_path):
  _checkpoint_and_stats(tmp_path)
  wd = str(tmp_path / "wd")
  _bin(
    "gradient_maps",
    f"--checkpoint={tmp_path / 'ckpt'}",
    "--seeds=0-4",
    "--resolution=8",
    f"--workdir={wd}",
    "--images_per_shard=3",
    "--method=reverse",
    "--dtype=float16",
  )
  shard = np.load(tmp_path / "wd/gradmaps/shard_00001.npz")
  assert shard["maps"].shape == (2, 12, 8, 8) and shard["maps"].dtype == np.float16
  assert shard["scale"].shape == (2, 12) and shard["maps"].max() == 1
  _bin(
    "detect_local",
    f"--workdir={wd}",
    "--segmenter=test_stylespace_report:quadrants",
    "--categories=ffhq",
    "--score=official",
    "--threshold=0.3",
    "--margin=0.1",
    "--verify_seeds=100-101",
  )
  det = json.loads((tmp_path / "wd/local/detections.json").read_text())
  ver = json.loads((tmp_path / "wd/local/verified.json").read_text())
  assert [c["category"] for c in ver["categories"]] == [c["category"] for c in det["categories"]]
  assert [c["detected"] for c in ver["categories"]] == [len(c["detected"]) for c in det["categories"]]
  assert [c["present_images"] for c in det["categories"]] == [0, 5, 5, 0, 0, 0, 5, 0, 0, 0, 5]
  assert (tmp_path / "wd/local/layer_histogram.png").is_file()
  assert np.load(tmp_path / "wd/local/local.npz")["fractions"].shape == (12, 11)
  # Label PNGs of the wrong size: a one-line error, non-zero exit.
  (tmp_path / "labels").mkdir()
  for s in range(5):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "labels" / f"seed{s:04d}.png")
  r = _bin("detect_local", f"--workdir={wd}", f"--labels_dir={tmp_path / 'labels'}", "--name=png", ok=False)
  assert "masks of size (4, 4) do not match the images' size (8, 8)" in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1
  out = tmp_path / "report"
  _bin(
    "report",
    f"--workdir={wd}",
    f"--stats={tmp_path / 'stats.npz'}",
    f"--outdir={out}",
    "--channels=2_1,0_3",
    "--num_images=2",
  )
  p = check_html(out / "index.html")
  assert "layer_histogram.png" in p.srcs and "maps/2_1.png" in p.srcs and "strips/0_3.png" in p.srcs
  shown = [e["name"] for c in ver["categories"] for e in vr.shown_entries(c, 5)]
  assert shown and all(f"verify/{n}.png" in p.srcs for n in shown)
  with pytest.raises(ValueError, match="1_0 have no gradient maps"):  # a toRGB channel
    report.build_report(wd, out, channels="1_0")
  with pytest.raises(ValueError, match="bad channel name"):
    report.build_report(wd, out, channels="2-1")


def _strip(g, styles, channels, alphas, std):
  """Stand-in manipulation strip: the channel's style values of the strip's images, as grey levels."""
  v = np.clip(np.asarray(styles)[:, channels] * 40 + 128, 0, 255).astype(np.uint8)  # (N, 1)
  return np.repeat(v[:, :, None], 3, axis=2).repeat(len(alphas), axis=1)


def test_report_of_a_streamed_workdir_equals_the_stored_one(tmp_path, monkeypatch):
  """The same images analysed with stored maps and streamed (the stream fed the stored maps): same page,
  same pictures (mean maps, strips from the first shard's styles, examples), extra channels included."""
  from ss_jax.stylespace import segmentation, verified_detection as vd
  from ss_jax.stylespace.gradmaps import api, stream
  from test_stylespace_locally_active import _quadrants, _run

  g = tiny_generator()
  (_, _), gm, job = _run(tmp_path / "stored", g)
  vd.finalize(job, gm, "official", 0.3, 0.1)

  def map_shards(spec, shards, g, chunk_size=None, method="auto", mesh=None):
    for i in shards:
      d = gm.read(i)
      yield i, d["index"], d["seeds"], d["styles"], d["images"] / 127.5 - 1.0, d["maps"]

  monkeypatch.setattr(api, "map_shards", map_shards)
  sj = stream.stream_job(
    tmp_path / "streamed",
    g,
    range(7),
    "tiny",
    {"segmenter": "quadrants"},
    segmentation.FFHQ,
    resolution=8,
    images_per_shard=3,
  )
  stream.run(sj, g, _quadrants)
  sc = vd.score_workdir(tmp_path / "streamed")
  assert sc.streamed and not (tmp_path / "streamed" / "gradmaps").exists()
  vd.finalize(sc.job, sc.gm, "official", 0.3, 0.1, stats=sc.stats, maps_fn=sc.maps_fn)
  pages = {}
  for kind in ("stored", "streamed"):
    out = tmp_path / f"report_{kind}"
    std = np.ones(g.num_style_channels)
    path = report.build_report(tmp_path / kind, out, g=g, std=std, channels="2_1,0_3", manipulation_fn=_strip)
    check_html(path)
    files = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    pages[kind] = path.read_text(), {f: (out / f).read_bytes() for f in files}
  assert report.open_analysis(tmp_path / "streamed").streamed and not report.open_analysis(tmp_path / "stored").streamed
  html_text, files = pages["streamed"]
  assert html_text == pages["stored"][0] and files == pages["stored"][1]
  names = {str(f) for f in files}
  assert {"maps/2_1.png", "maps/0_3.png", "strips/2_1.png", "examples/00000.png", "examples/00000_cats.png"} <= names
  assert "no manipulation strips" not in html_text
  assert sum(n.startswith("maps/") for n in names) > 2  # detected channels' mean maps besides the extra ones
  (sc.job.dir / "stats.npz").unlink()  # extra channels' mean maps come from the summed maps
  with pytest.raises(ValueError, match="stats.npz not found"):
    report.build_report(tmp_path / "streamed", tmp_path / "report_x", g=g, channels="2_1", manipulation_fn=_strip)


@pytest.mark.slow
def test_binaries_on_a_streamed_workdir(tmp_path):
  """gradient_maps --stream, detect_local (verification included) and report through the binaries."""
  _checkpoint_and_stats(tmp_path)
  wd = str(tmp_path / "wd")
  seg = "--segmenter=test_stylespace_report:quadrants"
  _bin("gradient_maps", f"--checkpoint={tmp_path / 'ckpt'}", "--seeds=0-4", "--resolution=8", f"--workdir={wd}")
  _bin(
    "gradient_maps",
    f"--checkpoint={tmp_path / 'ckpt'}",
    "--seeds=0-4",
    "--resolution=8",
    f"--workdir={tmp_path / 'st'}",
    "--stream",
    seg,
    "--categories=ffhq",
  )
  assert not (tmp_path / "st" / "gradmaps").exists()
  args = ["--score=official", "--threshold=0.3", "--margin=0.1", "--verify_seeds=100-101"]
  _bin("detect_local", f"--workdir={wd}", seg, "--categories=ffhq", *args)
  _bin("detect_local", f"--workdir={tmp_path / 'st'}", *args)
  pages = {}
  for w in (wd, str(tmp_path / "st")):
    out = pathlib.Path(w + "_report")
    _bin("report", f"--workdir={w}", f"--stats={tmp_path / 'stats.npz'}", f"--outdir={out}", "--channels=2_1")
    p = check_html(out / "index.html")
    pages[w] = sorted(p.srcs)
    assert "maps/2_1.png" in p.srcs and any(s.startswith("strips/") for s in p.srcs)
    assert any(s.startswith("verify/") for s in p.srcs) and "examples/00000.png" in p.srcs
  assert pages[wd] == pages[str(tmp_path / "st")]


def test_verification_section_marks_channels_found_by_editing():
  """Counts and verdicts of one category: detected ones apart from those found by editing (detected elsewhere)."""
  stat = lambda m: {"mean": m, "std": 0.1, "ci95": 0.05}
  entry = lambda name, layer, share, detected, **kw: {
    "name": name,
    "layer": layer,
    "detected": detected,
    "vis_share": stat(share),
    "l1_share": stat(share),
    "changed": stat(0.01),
    **kw,
  }
  cat = {
    "category": "background",
    "detected": 2,
    "verified": [entry("3_1", 3, 0.8, True), entry("5_2", 5, 0.7, False, detected_as=["eye", "hair"])],
    "rejected": [entry("3_4", 3, 0.2, True, open=True)],
    "found_by_editing": 1,
  }
  h = vr.category_html(cat, {"average_channel_win_rate": 0.3}, {3: "b8.conv1", 5: "b16.conv1"}, {})
  assert "1 of 2 detected channels verified" in h and "1 more found by editing" in h
  assert "<td>2 / 1 / 0</td>" in h and "<td>0 / 0 / 1</td>" in h  # per layer: detected / verified / found
  assert "found by editing; detected as eye, hair" in h and "rejected (undecided)" in h
  assert "Warning: an average channel wins this category in 30%" in h
  assert [e["name"] for e in vr.shown_entries(cat, 2)] == ["3_1", "5_2"]  # a found channel gets a row
  assert [e["name"] for e in vr.shown_entries(cat, 5)] == ["3_1", "3_4", "5_2"]
  old = dict(cat, verified=cat["verified"][:1], found_by_editing=0)  # a verified.json without found channels
  for e in old["verified"] + old["rejected"]:
    e.pop("detected")
  h = vr.category_html(old, {}, {3: "b8.conv1"}, {})
  assert "1 of 2 detected channels verified</b> by editing held-out images.</p>" in h and "<td>2 / 1</td>" in h
