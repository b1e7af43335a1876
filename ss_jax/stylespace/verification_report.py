"""HTML blocks and pictures of the verification step for the static report (`report.build_report`).

For every category: detected vs verified counts per style layer, the win rate of an average
channel under the paper's rule (a warning above 20%), and per shown channel its measured
locality (share of the visible and of the L1 change inside the region, mean +- 95% CI over
held-out images) next to the layer-matched random baseline, with an edit figure on held-out
seeds: unedited | -alpha | +alpha | max_RGB |delta| on a fixed 0..1 scale ([-1, 1] image units)
with the region outlined, plus zoomed crops when the region is small. Every cell is at least
128 px wide (nearest-neighbour). Long channel lists are collapsed (<details>) with links.

Pictures: OUTDIR/verify/L_C.png.
"""

import html

import numpy as np

from ss_jax.runtime import images as images_lib
from ss_jax.stylespace import segmentation, channels as stylespace

WIN_RATE_WARNING = 0.2
OUTLINE = np.array([0, 255, 255], np.uint8)


def diff_image(before, after):
  """(H, W, 3) uint8 pair -> (H, W) float max_RGB |delta| in [-1, 1] image units (0..2)."""
  return np.abs(after.astype(np.float32) - before.astype(np.float32)).max(-1) / 127.5


def heat(d, top=1.0):
  """(H, W) values on the fixed scale [0, top] -> (H, W, 3) uint8 (black -> red -> yellow -> white)."""
  t = np.clip(np.asarray(d, np.float64) / top, 0, 1)
  rgb = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], -1)
  return (rgb * 255).astype(np.uint8)


def outline(img, mask, f):
  """Upscales img (H, W, 3) by f (nearest) and draws the boundary of mask (H, W) in cyan."""
  big = img.repeat(f, 0).repeat(f, 1).copy()
  m = mask.repeat(f, 0).repeat(f, 1)
  inner = m.copy()
  inner[1:] &= m[:-1]
  inner[:-1] &= m[1:]
  inner[:, 1:] &= m[:, :-1]
  inner[:, :-1] &= m[:, 1:]
  big[m & ~inner] = OUTLINE
  return big


def _bbox(mask, pad=2):
  ys, xs = np.nonzero(mask)
  if not len(ys):
    return None
  h, w = mask.shape
  return max(ys.min() - pad, 0), min(ys.max() + pad + 1, h), max(xs.min() - pad, 0), min(xs.max() + pad + 1, w)


def edit_figure(before, after, cat_before, cat_after, k, cell=128, pad=4):
  """One row per image: before | after per alpha | |delta| heat (region outlined) [| zoomed crops].

  before (N, H, W, 3) uint8, after (N, A, H, W, 3), cat_* category ids. Returns (H', W', 3) uint8.
  """
  n, a, h, w = after.shape[:4]
  f = max(1, -(-cell // w))
  rows = []
  for i in range(n):
    region = (cat_before[i] == k) | (cat_after[i] == k).any(0)
    d = np.max([diff_image(before[i], after[i, j]) for j in range(a)], axis=0)
    cells = [outline(before[i], region, f)] + [outline(after[i, j], region, f) for j in range(a)]
    cells.append(outline(heat(d), region, f))
    box = _bbox(region)
    if box is not None and (box[1] - box[0]) * 2 <= h and (box[3] - box[2]) * 2 <= w:
      y0, y1, x0, x1 = box
      z = max(1, cell // max(y1 - y0, x1 - x0))
      for src in (before[i], after[i, -1], heat(d)):
        crop = outline(src[y0:y1, x0:x1], region[y0:y1, x0:x1], z)
        canvas = np.full((h * f, w * f, 3), 255, np.uint8)
        canvas[: min(crop.shape[0], h * f), : min(crop.shape[1], w * f)] = crop[: h * f, : w * f]
        cells.append(canvas)
    row = np.full((h * f, len(cells) * (w * f + pad), 3), 255, np.uint8)
    for j, c in enumerate(cells):
      row[:, j * (w * f + pad) : j * (w * f + pad) + w * f] = c
    rows.append(row)
  width = max(r.shape[1] for r in rows)
  out = np.full((len(rows) * (h * f + pad), width, 3), 255, np.uint8)
  for i, r in enumerate(rows):
    out[i * (h * f + pad) : i * (h * f + pad) + h * f, : r.shape[1]] = r
  return out


def render_figures(outdir, g, vspec, table, channels, segmenter, num_images=2):
  """Edit figures of channels [(name, flat, category id)] on the first held-out seeds -> {name: path}."""
  from ss_jax.stylespace import manipulate
  from ss_jax.stylegan2 import sampling

  seeds = vspec["seeds"][:num_images]
  styles = sampling.styles_from_seeds(g, seeds, vspec["psi"], class_idx=vspec["class_idx"])
  before = images_lib.to_uint8(manipulate.render(g, styles))
  cat_b = table.merge(segmentation.segment(segmenter, before))
  sigma = np.zeros(stylespace.num_channels(g.layout))
  sig = dict(zip(vspec["considered"], vspec["sigma"]))
  out = {}
  for name, flat, k in channels:
    sigma[flat] = sig[flat]
    after = images_lib.to_uint8(manipulate.edited_images(g, styles, [flat], vspec["alphas"], sigma))
    after = np.swapaxes(after, 0, 1)  # (N, A, H, W, 3)
    cat_a = table.merge(segmentation.segment(segmenter, after.reshape((-1,) + after.shape[2:])))
    fig = edit_figure(before, after, cat_b, cat_a.reshape(after.shape[:4]), k)
    images_lib.save_png(outdir / "verify" / f"{name}.png", fig)
    out[name] = f"verify/{name}.png"
  return out


def _m(e, key):
  s = e[key]
  return f"{s['mean']:.2f} ± {s['ci95']:.2f}"


def _found(e):
  """A verified entry of a category it was not detected for (verified.json "detected": false)."""
  return not e.get("detected", True)


def shown_entries(cat, max_channels=5):
  """The channels of one category shown in full (figures): its detected ones, verified first, then rejected,
  and up to a third of the rows (at least one) for channels found by editing, when there are any."""
  found = [e for e in cat["verified"] if _found(e)]
  own = [e for e in cat["verified"] + cat["rejected"] if not _found(e)]
  k = min(len(found), max(1, max_channels // 3))
  return own[: max_channels - k] + found[:k]


def _verdict(e, ver):
  v = "verified" if e in ver else "rejected"
  if _found(e):
    v += " (found by editing; detected as " + html.escape(", ".join(e.get("detected_as", []))) + ")"
  return v + (" (undecided)" if e.get("open") else "")


def category_html(cat, det_cat, layer_names, figures, max_channels=5, score="mass"):
  """HTML of one category's verification: counts per layer, warning, channel table, collapsed lists."""
  h = []
  rate = det_cat.get("average_channel_win_rate")
  if rate is not None and rate > WIN_RATE_WARNING:
    h.append(
      f'<p class="note">Warning: an average channel wins this category in {100 * rate:.0f}% of the '
      "images under the paper's rule (more than 20%): its win fractions here are close to chance"
      + (" (this run detects with the paper's rule).</p>" if score == "official" else ".</p>")
    )
  ver, rej = cat["verified"], cat["rejected"]
  found = [e for e in ver if _found(e)]  # detected for other categories, verified here
  h.append(
    f"<p><b>{len(ver) - len(found)} of {cat['detected']} detected channels verified</b> by editing held-out images"
    + (
      f"; <b>{len(found)} more found by editing</b>: detected for other categories, their edits land here"
      if found
      else ""
    )
    + ".</p>"
  )
  if ver or rej:
    per = {}
    for e in ver + rej:
      d, v, f = per.get(e["layer"], (0, 0, 0))
      per[e["layer"]] = (d + (not _found(e)), v + (e in ver and not _found(e)), f + _found(e))
    h.append(
      "<table><tr><th>style layer</th>"
      + "".join(f"<th>{html.escape(layer_names[L])}</th>" for L in sorted(per))
      + "</tr><tr><td>detected / verified"
      + (" / found by editing" if found else "")
      + "</td>"
      + "".join(f"<td>{per[L][0]} / {per[L][1]}{f' / {per[L][2]}' if found else ''}</td>" for L in sorted(per))
      + "</tr></table>"
    )
  b = cat.get("baseline") or {}
  if b:
    h.append(
      f"<p>Layer-matched random channels ({b['num_channels']}): visible change inside the region "
      f"{b['vis_share']:.2f}, L1 {b['l1_share']:.2f}, changed pixels {100 * b['changed']:.2f}%, "
      f"{100 * b['verified_rate']:.0f}% of them would pass the rule.</p>"
    )
  shown = shown_entries(cat, max_channels)
  if shown:
    h.append(
      "<table><tr><th>channel</th><th>verdict</th><th>visible change inside (mean ± 95% CI)</th>"
      "<th>L1 change inside</th><th>changed pixels</th><th>baseline visible / L1</th>"
      "<th>edits on held-out seeds: unedited | −α | +α | |Δ| (0..1, region outlined) | zoom</th></tr>"
    )
    for e in shown:
      fig = figures.get(e["name"])
      img = f'<img src="{html.escape(fig, quote=True)}" alt="edits of {html.escape(e["name"])}">' if fig else ""
      base = f"{b['vis_share']:.2f} / {b['l1_share']:.2f}" if b else "–"
      h.append(
        f'<tr id="v-{html.escape(e["name"])}"><td>{html.escape(e["name"])}</td>'
        f"<td>{_verdict(e, ver)}</td>"
        f"<td>{_m(e, 'vis_share')}</td>"
        f"<td>{_m(e, 'l1_share')}</td><td>{100 * e['changed']['mean']:.2f}%</td><td>{base}</td>"
        f"<td>{img}</td></tr>"
      )
    h.append("</table>")
  for label, lst in (("verified", ver), ("rejected", rej)):
    if len(lst) > max_channels or (lst and label == "rejected"):
      link = lambda e: (
        f'<a href="#v-{html.escape(e["name"])}">{html.escape(e["name"])}</a>' if e in shown else html.escape(e["name"])
      )
      h.append(
        f"<details><summary>all {len(lst)} {label} channels</summary><p>"
        + ", ".join(f"{link(e)} ({e['vis_share']['mean']:.2f})" for e in lst)
        + "</p></details>"
      )
  return "\n".join(h)


def build_sections(outdir, workdir, detections, verified, g=None, max_channels=5, num_images=2):
  """({category id: html}, notes) for report.write_report from verified.json's dict.

  Edit figures need the generator g and the segmenter named in the verification settings.
  """
  import json
  import pathlib

  notes = []
  spec_path = pathlib.Path(workdir) / verified["settings"]["store"] / "spec.json"
  vspec = json.loads(spec_path.read_text()) if spec_path.is_file() else None
  figures = {}
  if g is not None and vspec is not None and "segmenter" in vspec["labels"]:
    table = segmentation.CategoryTable.from_json(vspec["table"])
    seg, _ = segmentation.get_segmenter(vspec["labels"]["segmenter"])
    chans = [(e["name"], e["flat"], c["id"]) for c in verified["categories"] for e in shown_entries(c, max_channels)]
    figures = render_figures(pathlib.Path(outdir), g, vspec, table, chans, seg, num_images)
  else:
    notes.append("no generator or segmenter for the verification store: no edit figures.")
  layout = None if g is None else g.layout
  names = {}
  for c in detections["categories"]:
    for e in c["detected"]:
      names[e["layer"]] = e["layer_name"] if layout is None else layout[e["layer"]].name
  s = verified["settings"]
  notes.append(
    f"verification: {s['rule']}; min_share {s['min_share']:g}, min_changed {s['min_changed']:g} of the "
    f"image, visible = max_RGB |delta| > {s['visible']:g}; edits s_c {s['alphas']} x std_c on held-out "
    f"seeds {s['seeds']}."
  )
  score = detections["settings"].get("score", "official")
  out = {
    c["id"]: category_html(c, d, names, figures, max_channels, score)
    for c, d in zip(verified["categories"], detections["categories"])
  }
  return out, notes
