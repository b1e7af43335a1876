"""Edit-based ground truth for locally-active channels, and precision / recall of detection rules.

The oracle edits *every* considered channel on held-out images (a `verification` job run over
all map positions, on seeds disjoint from the gradient maps' and from the verification seeds)
and calls channel c *truly local* for category k when `verification.verified_mask` holds on
those images (most of the visible and of the L1 change inside k, enough pixels changed).
A detection rule, and the verified set it leads to, are then scored per category against it.

`run_benchmark` is the one-command benchmark of `benchmarks.bench_verification` on the shipped
ToyFaces model: gradient maps -> scores -> detections of every rule -> verification of the
default rule's detections (timed against the gradient maps) -> oracle -> tables.
"""

import json
import os
import pathlib
import time

import numpy as np

from ss_jax.stylespace import (
  detection_scores,
  detection_stats,
  locally_active,
  segmentation,
  channels as stylespace,
  verification,
  verified_detection,
)
from ss_jax.stylespace.gradmaps import storage
from ss_jax.runtime import jobs


def claims(dets, num_positions, num_categories):
  """{k: positions} -> (C, K) bool."""
  out = np.zeros((num_positions, num_categories), bool)
  for k, pos in dets.items():
    out[np.asarray(pos, np.int64), k] = True
  return out


def compare(truth, rules, categories):
  """Per category: #truly local and (precision, recall, F1, #claimed) of each rule.

  truth: (C, K) bool; rules: {rule name: (C, K) bool claimed}. Returns a list of dicts.
  """
  rows = []
  for k, name in enumerate(categories):
    row = {"category": name, "truly_local": int(truth[:, k].sum())}
    for r, claimed in rules.items():
      p, rec, f1, n, _ = detection_scores.precision_recall(claimed[:, k], truth[:, k])
      row[r] = {"precision": p, "recall": rec, "f1": f1, "claimed": n}
    rows.append(row)
  return rows


def targets(rows, rule):
  """The issue's targets for `rule` (the verified set): list of (category, ok, reason)."""
  out = []
  for r in rows:
    m = r[rule]
    if r["truly_local"] >= 3:
      ok = m["claimed"] > 0 and m["precision"] >= 0.8 and m["recall"] >= 0.5
      out.append((r["category"], bool(ok), f"P {m['precision']:.2f} (>= 0.8), R {m['recall']:.2f} (>= 0.5)"))
    elif r["truly_local"] == 0:
      out.append((r["category"], bool(m["claimed"] <= 1), f"{m['claimed']} claimed (<= 1)"))
  return out


def _fmt(v):
  return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2f}"


def markdown(rows, rules):
  """Markdown table: category, truly local, then claimed / P / R / F1 per rule."""
  head = "| category | truly local | " + " | ".join(f"{r}: claimed / P / R / F1" for r in rules) + " |"
  lines = [head, "|---|---|" + "---|" * len(rules)]
  for row in rows:
    cells = [
      f"{row[r]['claimed']} / {_fmt(row[r]['precision'])} / {_fmt(row[r]['recall'])} / {_fmt(row[r]['f1'])}"
      for r in rules
    ]
    lines.append(f"| {row['category']} | {row['truly_local']} | " + " | ".join(cells) + " |")
  tot = {r: np.array([[row[r]["claimed"], 0] for row in rows]).sum(0)[0] for r in rules}
  lines.append(
    "| total claimed | "
    + str(sum(row["truly_local"] for row in rows))
    + " | "
    + " | ".join(str(tot[r]) for r in rules)
    + " |"
  )
  return "\n".join(lines)


ORACLE_MIN_SHARE = 0.5  # truly local: more than half of the visible change inside the region


def run_benchmark(
  workdir,
  g,
  checkpoint,
  seeds,
  verify_seeds,
  oracle_seeds,
  alphas=verification.DEFAULT_ALPHAS,
  visible=verification.DEFAULT_VISIBLE,
  min_share=verification.DEFAULT_MIN_SHARE,
  min_changed=verification.DEFAULT_MIN_CHANGED,
  mass_grid=(0.15, 0.2, 0.3),
  rows_per_step=64,
):
  """The whole benchmark (resumable: every step is a ShardedJob under workdir). Returns a results dict
  (also written to workdir/bench_verification.json and .md)."""
  import sys
  from ss_jax.stylespace.gradmaps import api as gradmaps

  workdir = pathlib.Path(workdir)
  timing_path = workdir / "timings.json"
  timings = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
  save = lambda: jobs.atomic_write_json(timing_path, timings)
  gm = storage.gradient_map_job(workdir, g, seeds, checkpoint, 32, False, 0.7, 0, 8, "float32")
  if gm.pending():
    t = time.time()
    gradmaps.run_job(gm, g, progress=jobs.Progress(len(seeds), "gradient maps", "images", stream=sys.stderr))
    timings["gradient_maps_s"] = timings.get("gradient_maps_s", 0.0) + time.time() - t
    save()
  seg, tname = segmentation.get_segmenter("toyfaces")
  table = segmentation.get_table(tname)
  labels_fn = segmentation.labels_from_segmenter(seg)
  source = {"segmenter": "toyfaces"}
  job = locally_active.detection_job(workdir, gm, source, table)
  if job.pending():
    t = time.time()
    locally_active.run_detection(job, gm, labels_fn, table)
    timings["scoring_s"] = timings.get("scoring_s", 0.0) + time.time() - t
    save()
  layout, considered, _ = storage.job_layout(gm)
  c, k = len(considered), table.num_categories
  st = detection_stats.load(job, gm)
  frac = st.fractions()
  mass, area = st.mean_mass_share(), st.mean_area_share()
  rules = {"official": claims(detection_scores.detect("official", frac=frac), c, k)}
  for score in ("mass", "union"):
    for th in mass_grid:
      rules[f"{score} {th:g}"] = claims(detection_scores.detect(score, frac, mass, area, mass_threshold=th), c, k)
  default = f"{detection_scores.DEFAULT_SCORE} {detection_scores.DEFAULT_MASS_THRESHOLD:g}"
  # Verification of the default rule's detections, timed in a store of its own (starts empty), then the
  # shared store gets every rule's detections.
  result, _ = verified_detection.finalize(job, gm)
  if "verify_default_s" not in timings:
    timings["verify_load_start"] = os.getloadavg()[0]
    t = time.time()
    tjob = verified_detection.make_verify_job(workdir / "timing", gm, g, source, table, verify_seeds, alphas, visible)
    verified_detection.verify(job, gm, result, g, labels_fn, tjob, min_share, min_changed, rows_per_step=rows_per_step)
    timings["verify_default_s"] = time.time() - t
    timings["verify_load_end"] = os.getloadavg()[0]
    timings["verify_default_channels"] = int(sum(len(x["detected"]) for x in result["categories"]))
    save()
  vjob = verified_detection.make_verify_job(workdir, gm, g, source, table, verify_seeds, alphas, visible)
  verified_detection.verify(job, gm, result, g, labels_fn, vjob, min_share, min_changed, rows_per_step=rows_per_step)
  union = np.flatnonzero(np.any([r.any(1) for r in rules.values()], axis=0))
  verification.run_job(vjob, g, labels_fn, union, rows_per_step)
  size = g.config.img_resolution**2
  ver = np.zeros((c, k), bool)
  vsum = {}
  if len(union):
    vsum = verification.summarize(verification.load(vjob, union), size)
    ver[union] = verification.verified_mask(vsum, min_share, min_changed)
  sweep = {}  # the default rule's verified set under other verification thresholds
  for name, share in (
    ("share >= 0.5", vsum.get("vis_share_mean")),
    ("share >= 0.6", vsum.get("vis_share_mean")),
    ("share - CI >= 0.5", None),
  ):
    v = np.zeros((c, k), bool)
    if len(union):
      s = vsum["vis_share_mean"] - (vsum["vis_share_ci"] if share is None else 0)
      v[union] = (s >= (0.6 if "0.6" in name else 0.5)) & (vsum["changed_mean"] >= min_changed)
    sweep[f"{default} + verified ({name})"] = v
  rules.update({f"{r} + verified": m & ver for r, m in list(rules.items())})
  rules.update({n: rules[default] & v for n, v in sweep.items()})
  # Oracle: every channel, on seeds of its own.
  ojob = verification.make_job(
    workdir,
    g,
    considered,
    verification.sigma_from_gradient_maps(gm),
    oracle_seeds,
    source,
    table,
    psi=0.7,
    alphas=alphas,
    visible=visible,
    forbidden_seeds=list(seeds) + list(verify_seeds),
    name="oracle",
  )
  if ojob.pending():
    t = time.time()
    verification.run_job(
      ojob, g, labels_fn, range(c), rows_per_step, progress=jobs.Progress(c, "oracle", "channels", stream=sys.stderr)
    )
    timings["oracle_s"] = timings.get("oracle_s", 0.0) + time.time() - t
    save()
  osum = verification.summarize(verification.load(ojob, range(c)), size)
  layer = stylespace.layer_of_flat(layout)[considered]
  truth = verification.verified_mask(osum, ORACLE_MIN_SHARE, min_changed)
  rows = compare(truth, rules, table.categories)
  out = {
    "timings": timings,
    "default_rule": default,
    "rows": rows,
    "targets": targets(rows, f"{default} + verified"),
    "average_channel_win_rate": dict(zip(table.categories, frac.mean(0).round(4).tolist())),
    "outside_share_official": _outside(osum, rules["official"], table.categories),
    "outside_share_truth": _outside(osum, truth, table.categories),
    "settings": {
      "seeds": len(seeds),
      "verify_seeds": len(verify_seeds),
      "oracle_seeds": len(oracle_seeds),
      "alphas": list(alphas),
      "visible": visible,
      "min_share": min_share,
      "oracle_min_share": ORACLE_MIN_SHARE,
      "min_changed": min_changed,
    },
    "truly_local_per_layer": {
      name: np.bincount(layer[truth[:, i]], minlength=len(layout)).tolist() for i, name in enumerate(table.categories)
    },
  }
  jobs.atomic_write_json(workdir / "bench_verification.json", out)
  main = ["official", default, "official + verified", f"{default} + verified"]
  vrules = [f"{default} + verified"] + list(sweep)
  det_rules = [r for r in rules if "verified" not in r]
  md = (
    markdown(rows, main)
    + "\n\nDetection rules alone:\n\n"
    + markdown(rows, det_rules)
    + "\n\nEach rule + verification (min_share 0.55):\n\n"
    + markdown(rows, [f"{r} + verified" for r in det_rules])
    + "\n\nVerification thresholds (default rule):\n\n"
    + markdown(rows, vrules)
  )
  jobs.atomic_write_text(workdir / "bench_verification.md", md + "\n")
  np.savez(workdir / "oracle_summary.npz", truth=truth, mass=mass, frac=frac, **osum)
  return out


def _outside(osum, claimed, categories):
  """Per category: mean over claimed channels of the oracle's share of visible / L1 change OUTSIDE k."""
  out = {}
  for k, name in enumerate(categories):
    p = np.flatnonzero(claimed[:, k])
    if len(p):
      out[name] = {
        "n": int(len(p)),
        "vis_outside": round(1 - float(osum["vis_share_mean"][p, k].mean()), 3),
        "l1_outside": round(1 - float(osum["l1_share_mean"][p, k].mean()), 3),
      }
  return out
