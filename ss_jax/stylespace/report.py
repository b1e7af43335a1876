"""Static HTML report of a locally-active channel analysis, and its pictures (PIL only).

Layout written by `write_report` (every link relative, so the folder can be moved or served
as plain files):

  OUTDIR/index.html
  OUTDIR/layer_histogram.png            detections per style layer, stacked by category
  OUTDIR/maps/L_C.png                   mean gradient map of channel L_C (heat map)
  OUTDIR/strips/L_C.png                 manipulation strip (rows: images, columns: alphas)
  OUTDIR/examples/NNNNN.png, _cats.png  a few analysed images and their R x R category maps

A report reads the analysis folder WORKDIR/<name> (detect_local's outputs) and, for the strips,
example images and the mean maps of extra channels, either the stored gradient maps
(WORKDIR/gradmaps) or, after `experiments.gradient_maps --stream`, the streamed workdir's
examples.npz (the first shard's styles, images and category maps) and WORKDIR/<name>/stats.npz
(summed maps): both give the same page (`open_analysis`).
"""

import collections
import functools
import html
import json
import pathlib

import numpy as np

from ss_jax.runtime import images as images_lib
from ss_jax.runtime import jobs, outputs
from ss_jax.stylespace import manipulate, segmentation

# Anchor colours of a perceptually ordered dark -> bright heat map (inferno-like).
_HEAT = np.array(
  [
    (0, 0, 4),
    (40, 11, 84),
    (101, 21, 110),
    (159, 42, 99),
    (212, 72, 66),
    (245, 125, 21),
    (250, 193, 39),
    (252, 255, 164),
  ],
  np.float64,
)


def heatmap(m, size=128):
  """(P, P) non-negative map -> (S, S, 3) uint8, scaled by its max, nearest-neighbour up-sampled."""
  m = np.asarray(m, np.float64)
  top = m.max() if m.size else 0.0
  t = m / top if top > 0 else np.zeros_like(m)
  x = np.linspace(0, 1, len(_HEAT))
  rgb = np.stack([np.interp(t, x, _HEAT[:, i]) for i in range(3)], axis=-1)
  f = max(1, size // max(m.shape))
  return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).repeat(f, 0).repeat(f, 1)


def _font():
  from PIL import ImageFont

  return ImageFont.load_default()


def histogram_png(hist, layer_labels, categories, bar=18, height=220):
  """Stacked bar chart: hist (num_layers, K) counts -> uint8 (H, W, 3) image.

  layer_labels: one short label per bar (style layer index); colours follow
  segmentation.PALETTE with a legend on the right.
  """
  from PIL import Image, ImageDraw

  hist = np.asarray(hist)
  nl, k = hist.shape
  left, bottom, top, legend = 40, 34, 14, 120
  w = left + nl * bar + 10 + legend
  h = top + height + bottom
  im = Image.new("RGB", (w, h), (255, 255, 255))
  d = ImageDraw.Draw(im)
  font = _font()
  peak = max(1, int(hist.sum(1).max()) if nl else 1)
  scale = height / peak
  y0 = top + height
  d.line([(left, top), (left, y0), (left + nl * bar, y0)], fill=(0, 0, 0))
  for tick in sorted({0, peak // 2, peak}):
    y = y0 - tick * scale
    d.line([(left - 4, y), (left, y)], fill=(0, 0, 0))
    d.text((2, y - 6), str(tick), fill=(0, 0, 0), font=font)
  for i in range(nl):
    x = left + i * bar + 2
    y = y0
    for j in range(k):
      if hist[i, j]:
        hgt = hist[i, j] * scale
        d.rectangle(
          [x, y - hgt, x + bar - 4, y],
          fill=tuple(int(v) for v in segmentation.PALETTE[j % len(segmentation.PALETTE)]),
          outline=(255, 255, 255),
        )
        y -= hgt
    d.text((x, y0 + 4 + 10 * (i % 2)), str(layer_labels[i]), fill=(0, 0, 0), font=font)
  d.text((left, h - 12), "style layer", fill=(0, 0, 0), font=font)
  lx = left + nl * bar + 16
  for j, name in enumerate(categories):
    y = top + 14 * j
    d.rectangle(
      [lx, y, lx + 10, y + 10],
      fill=tuple(int(v) for v in segmentation.PALETTE[j % len(segmentation.PALETTE)]),
      outline=(0, 0, 0),
    )
    d.text((lx + 14, y), str(name), fill=(0, 0, 0), font=font)
  return np.asarray(im)


_CSS = """body{font-family:sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;margin:0.5em 0}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:middle}
th{background:#f3f3f3}img{image-rendering:pixelated}pre{background:#f6f6f6;padding:1em;overflow-x:auto}
.note{color:#a33}"""


def _img(src, alt, width=None):
  w = f' width="{int(width)}"' if width else ""
  return f'<img src="{html.escape(src, quote=True)}" alt="{html.escape(alt, quote=True)}"{w}>'


def write_report(
  outdir,
  detections,
  histogram,
  mean_maps=None,
  strips=None,
  examples=None,
  notes=(),
  max_channels=8,
  title="Locally-active style channels",
  category_html=None,
  verified_counts=None,
):
  """Writes index.html and its PNGs into outdir; returns the html path.

  Args:
    detections: dict as in detections.json (settings + per-category "detected" lists).
    histogram: dict as in layer_histogram.json.
    mean_maps: {channel name: (P, P) mean gradient map}.
    strips: {channel name: uint8 (H, W, 3) manipulation strip}.
    examples: optional (images (E, H, W, C) uint8, category maps (E, P, P)) to show the masks.
    notes: extra lines shown at the top (e.g. a missing manipulation module).
    category_html: {category id: HTML block} shown under each category (verification_report).
    verified_counts: {category id: verified channels}, a summary column.
    max_channels: detected channels shown per category (the tables list all of them).
  """
  out = outputs.claim(outdir, "report")  # never into a folder of the user's files
  mean_maps, strips = mean_maps or {}, strips or {}
  cats = detections["categories"]
  layers = histogram["layers"]
  hist = np.array([L["counts"] for L in layers]).reshape(len(layers), len(histogram["categories"]))
  images_lib.save_png(
    out / "layer_histogram.png", histogram_png(hist, [L["index"] for L in layers], histogram["categories"])
  )
  shown = set()
  for c in cats:
    for e in c["detected"][:max_channels]:
      shown.add(e["name"])
  for name in sorted(shown):
    if name in mean_maps:
      images_lib.save_png(out / "maps" / f"{name}.png", heatmap(mean_maps[name]))
    if name in strips:
      images_lib.save_png(out / "strips" / f"{name}.png", strips[name])

  h = [
    f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
    f"<style>{_CSS}</style></head><body>",
    f"<h1>{html.escape(title)}</h1>",
  ]
  for line in notes:
    h.append(f'<p class="note">{html.escape(str(line))}</p>')
  s = detections["settings"]
  if s.get("score", "official") == "official":
    h.append(
      f"<p>{int(s.get('num_images', 0))} images; a channel is locally active for a category when "
      f"it wins the category in more than {s['threshold']:g} of the images containing it and beats "
      f"every other category by more than {s['margin']:g} (overlap score n / area<sup>"
      f"{s['discount']:g}</sup>, the paper's rule).</p>"
    )
  else:
    h.append(
      f"<p>{int(s.get('num_images', 0))} images; rule <b>{html.escape(s['score'])}</b>: a channel is "
      "detected for a category when its gradient-map mass inside the category exceeds the category's "
      f"mean area share a by at least {s['mass_threshold']:g} x (1 - a)"
      + (
        f" or the paper's rule holds (win fraction &gt; {s['threshold']:g}, margin {s['margin']:g})"
        if s["score"] == "union"
        else ""
      )
      + ".</p>"
    )
  vc = verified_counts or {}
  h.append(
    "<h2>Summary</h2><table><tr><th>category</th><th>images containing it</th>"
    "<th>detected channels</th>"
    + ("<th>verified by editing</th>" if vc else "")
    + "<th>an average channel wins it (paper's rule)</th></tr>"
  )
  for c in cats:
    anchor = f"cat-{c['id']}"
    rate = c.get("average_channel_win_rate")
    h.append(
      f'<tr><td><a href="#{anchor}">{html.escape(c["category"])}</a></td>'
      f"<td>{c['present_images']}</td><td>{len(c['detected'])}</td>"
      + (f"<td>{vc.get(c['id'], 0)}</td>" if vc else "")
      + (
        "<td>–</td>"
        if rate is None
        else f"<td{' class=note' if rate > 0.2 else ''}>{100 * rate:.0f}% "
        f"of images{' (warning: > 20%)' if rate > 0.2 else ''}</td>"
      )
      + "</tr>"
    )
  h.append("</table>")
  h.append("<h2>Detections per style layer</h2>" + _img("layer_histogram.png", "per-layer histogram"))
  h.append(
    "<table><tr><th>layer</th><th>name</th><th>res</th>"
    + "".join(f"<th>{html.escape(n)}</th>" for n in histogram["categories"])
    + "<th>total</th></tr>"
  )
  for L in layers:
    h.append(
      f"<tr><td>{L['index']}</td><td>{html.escape(L['name'])}</td><td>{L['resolution']}</td>"
      + "".join(f"<td>{v}</td>" for v in L["counts"])
      + f"<td>{L['total']}</td></tr>"
    )
  h.append("</table>")
  if examples is not None:
    ims, cm = examples
    h.append("<h2>Example images and category maps</h2><p>")
    for i, (im, c) in enumerate(zip(ims, cm)):
      images_lib.save_png(out / "examples" / f"{i:05d}.png", im)
      f = max(1, im.shape[0] // c.shape[0])
      images_lib.save_png(out / "examples" / f"{i:05d}_cats.png", segmentation.colorize(c).repeat(f, 0).repeat(f, 1))
      h.append(
        _img(f"examples/{i:05d}.png", f"image {i}", 128)
        + " "
        + _img(f"examples/{i:05d}_cats.png", f"categories {i}", 128)
        + "&nbsp;&nbsp;"
      )
    swatch = lambda j: tuple(int(v) for v in segmentation.PALETTE[j % len(segmentation.PALETTE)])
    h.append(
      "</p><p>"
      + " ".join(
        f'<span style="background:rgb{swatch(j)};padding:0 8px">&nbsp;</span> {html.escape(n)}'
        for j, n in enumerate(histogram["categories"])
      )
      + "</p>"
    )
  for c in cats:
    h.append(f'<h2 id="cat-{c["id"]}">{html.escape(c["category"])}</h2>')
    h.append((category_html or {}).get(c["id"], ""))
    if not c["present_images"]:
      h.append("<p>Not present in any analysed image.</p>")
      continue
    if not c["detected"]:
      h.append("<p>No locally-active channels.</p>")
    else:
      h.append(
        "<table><tr><th>channel</th><th>layer</th><th>fraction</th><th>margin</th><th>coverage</th>"
        "<th>map mass inside</th><th>mean gradient map (own max)</th><th>manipulation</th></tr>"
      )
      for e in c["detected"][:max_channels]:
        n = e["name"]
        hm = _img(f"maps/{n}.png", f"mean gradient map {n}", 96) if n in mean_maps else ""
        st = _img(f"strips/{n}.png", f"manipulation {n}") if n in strips else ""
        mass = f"{e['mass']:.2f}" if "mass" in e else "–"
        h.append(
          f"<tr><td>{html.escape(n)}</td>"
          f"<td>{html.escape(e['layer_name'])} ({e['resolution']} px)</td>"
          f"<td>{e['fraction']:.3f}</td><td>{e['margin']:.3f}</td><td>{e['mean_coverage']:.3f}</td>"
          f"<td>{mass}</td><td>{hm}</td><td>{st}</td></tr>"
        )
      h.append("</table>")
      rest = c["detected"][max_channels:]
      if rest:
        h.append(
          f"<details><summary>{len(rest)} more detected</summary><p>"
          + ", ".join(f"{html.escape(e['name'])} ({e['fraction']:.2f})" for e in rest)
          + "</p></details>"
        )
    top = [e for e in c["top"][:10] if e["fraction"] > 0]
    if top:
      h.append(
        "<p>Highest fractions (detected or not): "
        + ", ".join(f"{html.escape(e['name'])} ({e['fraction']:.2f})" for e in top)
        + "</p>"
      )
  h.append("<h2>Settings</h2><pre>" + html.escape(json.dumps(s, indent=2, sort_keys=True)) + "</pre>")
  h.append("</body></html>\n")
  path = out / "index.html"
  jobs.atomic_write_text(path, "\n".join(h))
  return path


def load_results(job_dir):
  """(detections, histogram, mean_maps {name: (P, P)}) from a finalized detection job folder."""
  job_dir = pathlib.Path(job_dir)
  for f in ("detections.json", "layer_histogram.json", "mean_maps.npz"):
    if not (job_dir / f).is_file():
      raise ValueError(f"{job_dir / f} not found; run experiments.detect_local first")
  det = json.loads((job_dir / "detections.json").read_text())
  hist = json.loads((job_dir / "layer_histogram.json").read_text())
  mm = jobs.load_npz(job_dir / "mean_maps.npz")
  return det, hist, mm


Analysis = collections.namedtuple("Analysis", "spec streamed examples mean_maps")
Analysis.__doc__ = """What a report reads besides WORKDIR/<name>'s result files (`open_analysis`).

spec: the gradient-map settings (checkpoint, config, seeds, pooled, ...); streamed: bool;
examples: () -> (styles (N, S) float32, images (N, H, W, C) uint8, cats (N, P, P) or None), the
first shard's images; mean_maps: map positions (M,) -> (M, P, P) float32 mean gradient maps."""


def open_analysis(workdir, name="local"):
  """The analysed images of a workdir with stored gradient maps or streamed statistics -> Analysis.

  A workdir holding WORKDIR/gradstats but no WORKDIR/gradmaps is streamed (as for detect_local,
  `verified_detection.score_workdir`): examples from gradstats/examples.npz, mean maps from the
  summed maps in WORKDIR/<name>/stats.npz (written by detect_local).
  """
  from ss_jax.stylespace import detection_stats, locally_active
  from ss_jax.stylespace.gradmaps import storage, stream

  workdir = pathlib.Path(workdir)
  job_dir = workdir / name
  sj = stream.open_stream(workdir)
  if sj is None or (workdir / storage.GRADMAPS).is_dir():
    gm = storage.open_job(workdir, storage.GRADMAPS)

    def examples():
      d = gm.read(0)
      cats = job_dir / "shard_00000.npz"
      return d["styles"], d["images"], jobs.load_npz(cats)["cats"] if cats.is_file() else None

    return Analysis(gm.spec, False, examples, functools.partial(locally_active.mean_maps, gm))

  def examples():
    d = jobs.load_npz(sj.dir / "examples.npz")
    return d["styles"], d["images"], d["cats"]

  def mean_maps(positions):
    path = job_dir / "stats.npz"
    if not path.is_file():
      raise ValueError(f"{path} not found; run experiments.detect_local --workdir={workdir} first")
    return detection_stats.DetectionStats.from_arrays(jobs.load_npz(path)).mean_maps(positions)

  return Analysis(sj.spec["gradient_maps"], True, examples, mean_maps)


def shown_channels(detections, max_channels=8):
  """Flat S indices and names of the channels the report shows (top max_channels per category)."""
  seen = {}
  for c in detections["categories"]:
    for e in c["detected"][:max_channels]:
      seen.setdefault(e["name"], e["flat"])
  return list(seen.values()), list(seen)


def build_report(
  workdir,
  outdir,
  name="local",
  g=None,
  std=None,
  max_channels=5,
  alphas=(-10, -5, 0, 5, 10),
  num_images=3,
  channels=None,
  manipulation_fn=None,
  num_examples=4,
):
  """Report of WORKDIR/<name> (a finalized detection job) into outdir; returns the html path.

  Args:
    g, std: generator and (S,) population std for the manipulation strips; without
      them (or without manipulation_fn) the report has no strips and says so.
    channels: extra channel names ("6_202,9_11") to show besides the detections.
    manipulation_fn: (g, styles (N, S), channels [flat], alphas, std) -> uint8 strip,
      default ss_jax.stylespace.manipulate.manipulation_grid.
    num_images: images (the first of the analysis) per manipulation strip.
  """
  from ss_jax.stylespace import locally_active, channels as stylespace
  from ss_jax.stylespace.gradmaps import storage

  outputs.claim(outdir, "report")  # before any work: never into a folder of the user's files
  an = open_analysis(workdir, name)
  layout, considered, _ = storage.job_layout(an)
  job_dir = pathlib.Path(workdir) / name
  det, hist, mm = load_results(job_dir)
  ex_styles, ex_images, ex_cats = an.examples()
  notes = []
  maps = dict(zip(stylespace.names_of(layout, mm["channels"]), mm["maps"]))
  if channels:
    flats = stylespace.parse_names(layout, channels)
    pos = np.searchsorted(considered, flats)
    bad = [stylespace.name_of(layout, f) for f, p in zip(flats, pos) if p >= len(considered) or considered[p] != f]
    if bad:
      raise ValueError(
        f"channel(s) {', '.join(bad)} have no gradient maps (toRGB channels need "
        "experiments.gradient_maps --include_torgb)"
      )
    local = jobs.load_npz(job_dir / "local.npz")
    frac = local["fractions"]
    for f, p in zip(flats, pos):
      maps.setdefault(stylespace.name_of(layout, f), an.mean_maps([p])[0])
    extra = []
    for f, p in zip(flats, pos):  # shown with their best category's numbers
      best, second = np.argsort(-frac[p], kind="stable")[:2] if frac.shape[1] > 1 else (0, 0)
      runner_up = frac[p, second] if second != best else 0.0
      extra.append(
        locally_active._entry(
          layout, f, p, frac[p, best], runner_up, local["mean_score"][p, best], local["mean_coverage"][p, best]
        )
      )
      extra[-1]["layer_name"] += f", best: {det['settings']['categories'][int(best)]}"
    det = dict(
      det,
      categories=det["categories"]
      + [
        {
          "category": "requested channels",
          "id": "extra",
          "present_images": int(det["settings"]["num_images"]),
          "top": [],
          "detected": extra,
        }
      ],
    )
  strips = {}
  if manipulation_fn is None:
    manipulation_fn = functools.partial(manipulate.manipulation_grid, min_cell=64)  # readable for tiny models
  if manipulation_fn is not None and (g is None or std is None):
    notes.append("no generator / population std given: no manipulation strips.")
  elif manipulation_fn is not None:
    styles = ex_styles[:num_images]
    flats, names = shown_channels(det, max_channels)
    for f, n in zip(flats, names):
      strips[n] = np.asarray(manipulation_fn(g, styles, [f], list(alphas), std))
    notes.append(
      f"manipulation strips: s_c + alpha * std_c, alpha in {list(alphas)} (columns), "
      f"first {len(styles)} analysed images (rows)."
    )
  examples = None if ex_cats is None else (ex_images[:num_examples], ex_cats[:num_examples])
  cat_html = counts = None
  if (job_dir / "verified.json").is_file():
    from ss_jax.stylespace import verification_report

    ver = json.loads((job_dir / "verified.json").read_text())
    cat_html, vnotes = verification_report.build_sections(outdir, workdir, det, ver, g, max_channels)
    counts = {c["id"]: len(c["verified"]) for c in ver["categories"]}
    notes.extend(vnotes)
  return write_report(
    outdir, det, hist, maps, strips, examples, notes, max_channels, category_html=cat_html, verified_counts=counts
  )
