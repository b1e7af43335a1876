"""Edit-based ground truth for locally-active channels, and precision / recall of detection rules.

The oracle edits *every* considered channel on held-out images (`verification` jobs run over
all map positions, on seeds disjoint from the gradient maps' and from the verification seeds),
in stages: a channel whose 95% CI of the visible share contains 0.5 for any category is measured
on the next stage's images too (`verification.run_stages`). It calls channel c *truly local* for
category k when the mean visible share over all its images is >= 0.5 and enough pixels change
(`oracle_labels`), and *decided* when the CI excludes 0.5. A detection rule, and the verified set
it leads to, are scored per category against it, on all channels and on the decided ones only.

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


def compare(truth, rules, categories, decided=None):
  """Per category: #truly local and (precision, recall, F1, #claimed) of each rule.

  truth: (C, K) bool; rules: {rule name: (C, K) bool claimed}. decided: (C, K) bool, optional: score only the
  channels the oracle decided (its "undecided" ones are counted apart: row "undecided", and per rule
  "claimed_undecided", neither right nor wrong). Returns a list of dicts.
  """
  rows = []
  for k, name in enumerate(categories):
    d = np.ones(len(truth), bool) if decided is None else np.asarray(decided[:, k], bool)
    row = {"category": name, "truly_local": int((truth[:, k] & d).sum())}
    if decided is not None:
      row["undecided"] = int((~d).sum())
    for r, claimed in rules.items():
      p, rec, f1, n, _ = detection_scores.precision_recall(claimed[d, k], truth[d, k])
      row[r] = {"precision": p, "recall": rec, "f1": f1, "claimed": n}
      if decided is not None:
        row[r]["claimed_undecided"] = int((claimed[:, k] & ~d).sum())
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
    elif r["truly_local"] == 0:  # every claim counts here, on undecided channels too
      n = m["claimed"] + m.get("claimed_undecided", 0)
      out.append((r["category"], bool(n <= 1), f"{n} claimed (<= 1)"))
  return out


def split_choice(truth, rules, categories, candidates, decided=None):
  """Threshold choice without scoring on the same channels: the candidate rule meeting the most targets (ties:
  the larger summed F1) on the even map positions, scored on the odd ones.

  Returns {"chosen": name, "even": rows, "odd": rows} (rows as `compare`, restricted to each half).
  """
  out = {}
  for name, sel in (("even", 0), ("odd", 1)):
    h = np.arange(sel, len(truth), 2)
    d = None if decided is None else decided[h]
    out[name] = compare(truth[h], {r: rules[r][h] for r in candidates}, categories, d)

  def merit(r):
    met = [ok for _, ok, _ in targets(out["even"], r)]
    f1 = [row[r]["f1"] for row in out["even"] if row[r]["f1"] == row[r]["f1"] and row[r]["f1"] is not None]
    return (sum(met), float(np.nansum(f1)))

  out["chosen"] = max(candidates, key=merit)
  return out


def _fmt(v):
  return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2f}"


def markdown(rows, rules):
  """Markdown table: category, truly local, then claimed / P / R / F1 per rule."""
  und = "undecided" in rows[0]  # decided channels only: undecided counts, claims among them after a "+"
  head = "| category | truly local | " + ("undecided | " if und else "")
  head += " | ".join(f"{r}: claimed{' (+ undecided)' if und else ''} / P / R / F1" for r in rules) + " |"
  lines = [head, "|---|---|" + ("---|" if und else "") + "---|" * len(rules)]
  for row in rows:
    cells = [
      f"{row[r]['claimed']}{' (+' + str(row[r]['claimed_undecided']) + ')' if und else ''} / "
      f"{_fmt(row[r]['precision'])} / {_fmt(row[r]['recall'])} / {_fmt(row[r]['f1'])}"
      for r in rules
    ]
    extra = f"{row['undecided']} | " if und else ""
    lines.append(f"| {row['category']} | {row['truly_local']} | {extra}" + " | ".join(cells) + " |")
  tot = {r: sum(row[r]["claimed"] for row in rows) for r in rules}
  extra = f"{sum(row['undecided'] for row in rows)} | " if und else ""
  lines.append(
    f"| total claimed | {sum(row['truly_local'] for row in rows)} | {extra}"
    + " | ".join(str(tot[r]) for r in rules)
    + " |"
  )
  return "\n".join(lines)


ORACLE_MIN_SHARE = 0.5  # truly local: more than half of the visible change inside the region


def oracle_labels(osum, min_changed=verification.DEFAULT_MIN_CHANGED):
  """The oracle's verdicts from its summary (M, K): (truth, decided) bool arrays.

  truth: mean visible share >= 0.5 and enough pixels changed (the point definition); decided: the 95% CI of
  the share excludes 0.5 (or the change is too small to be seen), so the verdict is not a coin flip of the
  sampled images. Channels not decided after the last oracle stage are "undecided".
  """
  truth = verification.verified_mask(osum, ORACLE_MIN_SHARE, min_changed)
  return truth, ~verification.undecided(osum, ORACLE_MIN_SHARE, min_changed)


def _time_gradient_maps(workdir, g, checkpoint, seeds, timings):
  """Seconds per image of the gradient maps (same settings as the benchmark's), timed on `seeds` in a store of
  their own, once (cached in timings): the baseline of the verification's cost under the current load."""
  import sys
  from ss_jax.stylespace.gradmaps import api as gradmaps

  if "gradient_maps_sample_s" in timings:
    return
  tj = storage.gradient_map_job(workdir / "timing_gradmaps", g, seeds, checkpoint, 32, False, 0.7, 0, 8, "float32")
  marks = []  # (time, images) per written shard: the steady rate leaves the first shard (compilation) out

  class _Clock(jobs.Progress):
    def update(self, n=1, force=False, note=""):
      marks.append((time.time(), n))
      super().update(n, force, note)

  timings["gradient_maps_sample_load_start"] = os.getloadavg()[0]
  t = time.time()
  gradmaps.run_job(tj, g, progress=_Clock(len(seeds), "gradient maps (timing)", "images", stream=sys.stderr))
  timings["gradient_maps_sample_s"] = time.time() - t
  timings["gradient_maps_sample_images"] = len(seeds)
  timings["gradient_maps_sample_load_end"] = os.getloadavg()[0]
  if len(marks) > 1:
    timings["gradient_maps_s_per_image"] = (marks[-1][0] - marks[0][0]) / sum(n for _, n in marks[1:])


def run_benchmark(
  workdir,
  g,
  checkpoint,
  seeds,
  verify_stages,
  oracle_stages,
  alphas=verification.DEFAULT_ALPHAS,
  visible=verification.DEFAULT_VISIBLE,
  min_share=verification.DEFAULT_MIN_SHARE,
  min_changed=verification.DEFAULT_MIN_CHANGED,
  confident=verification.DEFAULT_CONFIDENT,
  any_category=verification.DEFAULT_ANY_CATEGORY,
  mass_grid=(0.1, 0.15, 0.2, 0.3),
  rows_per_step=64,
  time_seeds=32,
):
  """The whole benchmark (resumable: every step is a ShardedJob under workdir). Returns a results dict
  (also written to workdir/bench_verification.json and .md).

  verify_stages / oracle_stages: lists of held-out seed lists (sequential stages, all disjoint from each other
  and from `seeds`); time_seeds: images of the gradient-map timing sample (0: none). any_category: the
  "+ verified" rules claim a detected channel for every category it verifies in (detect_local's default);
  the other reading, only the categories it was detected for, is scored beside it as "(own category)".
  """
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
  frac, mass, area = st.fractions(), st.mean_mass_share(), st.mean_area_share()
  rules = {"official": claims(detection_scores.detect("official", frac=frac), c, k)}
  for score in ("mass", "union"):
    for th in mass_grid:
      rules[f"{score} {th:g}"] = claims(detection_scores.detect(score, frac, mass, area, mass_threshold=th), c, k)
  default = f"{detection_scores.DEFAULT_SCORE} {detection_scores.DEFAULT_MASS_THRESHOLD:g}"
  # Verification of the default rule's detections as detect_local runs it, timed in stores of their own
  # (they start empty), next to a timing sample of the gradient maps under the same load.
  result, _ = verified_detection.finalize(job, gm, stats=st)
  if time_seeds:
    _time_gradient_maps(workdir, g, checkpoint, list(seeds)[:time_seeds], timings)
    save()
  if "verify_default_s" not in timings:
    timings["verify_load_start"] = os.getloadavg()[0]
    t = time.time()
    tj = verified_detection.make_verify_stages(workdir / "timing", gm, g, source, table, verify_stages, alphas, visible)
    verified_detection.verify(
      job,
      gm,
      result,
      g,
      labels_fn,
      tj,
      min_share,
      min_changed,
      rows_per_step=rows_per_step,
      confident=confident,
      any_category=any_category,
    )
    timings["verify_default_s"] = time.time() - t
    timings["verify_load_end"] = os.getloadavg()[0]
    timings["verify_default_channels"] = int(sum(len(x["detected"]) for x in result["categories"]))
    npz = jobs.load_npz(job.dir / "verified.npz")  # channels (with the baseline) measured per stage
    timings["verify_default_measured"] = [int((npz["stages"] > j).sum()) for j in range(len(tj))]
    save()
  # Every rule's detections measured in one shared store, each rule's verdicts as detect_local reaches them
  # (the default's are detect_local's own output, verified.json).
  sigma = verification.sigma_from_gradient_maps(gm)
  vjobs = verified_detection.make_verify_stages(workdir, gm, g, source, table, verify_stages, alphas, visible, sigma)
  vout = verified_detection.verify(
    job,
    gm,
    result,
    g,
    labels_fn,
    vjobs,
    min_share,
    min_changed,
    rows_per_step=rows_per_step,
    confident=confident,
    any_category=any_category,
  )
  npz = jobs.load_npz(job.dir / "verified.npz")
  pos_d, depth = npz["positions"], npz["stages"]
  first = verification.summarize(verification.load(vjobs[0], pos_d), g.config.img_resolution**2)
  ver = {n: np.zeros((c, k), bool) for n in ("first", "first_055")}
  ver["first"][pos_d] = verification.verified_mask(first, min_share, min_changed)
  ver["first_055"][pos_d] = verification.verified_mask(first, 0.55, min_changed)
  verified_of = {}  # (rule, confident, any category) -> (C, K) claimed: each rule's detections, own stages
  for r, m in rules.items():
    u = np.flatnonzero(m.any(1))
    for anycat in (False, True):  # any category: every verdict of a detected channel matters for the stages
      vs = verification.run_stages(
        vjobs, g, labels_fn, u, None if anycat else m[u], min_share, min_changed, rows_per_step
      )[0]
      for conf in (False, True):
        verified_of[r, conf, anycat] = np.zeros((c, k), bool)
        if len(u):
          verified_of[r, conf, anycat][u] = verification.verified_mask(vs, min_share, min_changed, conf)
        if not anycat:
          verified_of[r, conf, anycat] &= m
  mine = np.zeros((c, k), bool)  # detect_local's own verdicts (verified.json) for the default rule
  for cat in vout["categories"]:
    mine[[e["position"] for e in cat["verified"]], cat["id"]] = True
  verified_of[default, confident, any_category] = mine
  n1 = len(verify_stages[0])
  sweep = {
    f"{default} + verified (first {n1} images only)": ver["first"],
    f"{default} + verified (first {n1} images, share >= 0.55: previous default)": ver["first_055"],
  }
  other = "own category" if any_category else "any category"  # the reading that is not the default
  suffix = lambda *tags: f" ({', '.join(tags)})" if tags else ""  # " (CI, own category)", ...
  for r in list(rules):
    for conf in (False, True):
      ci = ("CI",) if conf else ()
      rules[f"{r} + verified{suffix(*ci)}"] = verified_of[r, conf, any_category]
      rules[f"{r} + verified{suffix(*ci, other)}"] = verified_of[r, conf, not any_category]
  rules.update({n: rules[default] & v for n, v in sweep.items()})  # own category, as the previous default
  chosen = f"{default} + verified{' (CI)' if confident else ''}"
  # Oracle: every channel, on seeds of its own, more images while its verdict on any category is open.
  forbidden = list(seeds) + [s for st in verify_stages for s in st]
  ojobs = []
  for j, oseeds in enumerate(oracle_stages):
    ojobs.append(
      verification.make_job(
        workdir,
        g,
        considered,
        sigma,
        oseeds,
        source,
        table,
        psi=0.7,
        alphas=alphas,
        visible=visible,
        forbidden_seeds=forbidden + [s for st in oracle_stages[:j] for s in st],
        name="oracle" if j == 0 else f"oracle_{j + 1}",
      )
    )
  count = lambda: [sum(o.done(i) for i in range(c)) for o in ojobs]
  t, load, before = time.time(), os.getloadavg()[0], count()
  prog = lambda j, n: jobs.Progress(n, f"oracle (stage {j + 1})", "channels", stream=sys.stderr)
  osum, odepth = verification.run_stages(
    ojobs, g, labels_fn, range(c), None, ORACLE_MIN_SHARE, min_changed, rows_per_step, prog
  )
  if count() != before:  # each run that measured anything: seconds, load, channels measured per stage
    run = {"s": time.time() - t, "load_start": load, "load_end": os.getloadavg()[0]}
    timings.setdefault("oracle_runs", []).append({**run, "channels": [a - b for a, b in zip(count(), before)]})
    save()
  layer = stylespace.layer_of_flat(layout)[considered]
  truth, decided = oracle_labels(osum, min_changed)
  rows = compare(truth, rules, table.categories)
  rows_decided = compare(truth, rules, table.categories, decided)
  det_rules = [r for r in rules if "verified" not in r]
  variants = (suffix(), suffix("CI"), suffix(other), suffix("CI", other))
  cands = [f"{r} + verified{v}" for r in det_rules if r.startswith(f"{default.split()[0]} ") for v in variants]
  split = split_choice(truth, rules, table.categories, cands)
  split_d = split_choice(truth, rules, table.categories, cands, decided)
  out = {
    "timings": timings,
    "cost": _cost(timings, len(seeds)),
    "default_rule": default,
    "default_verified": chosen,
    "rows": rows,
    "rows_decided": rows_decided,
    "targets": targets(rows, chosen),
    "targets_decided": targets(rows_decided, chosen),
    "split": {"candidates": cands, **split, "targets_odd": targets(split["odd"], split["chosen"])},
    "split_decided": {**split_d, "targets_odd": targets(split_d["odd"], split_d["chosen"])},
    "average_channel_win_rate": dict(zip(table.categories, frac.mean(0).round(4).tolist())),
    "outside_share_official": _outside(osum, rules["official"], table.categories),
    "outside_share_truth": _outside(osum, truth, table.categories),
    "verification_minus_oracle": _shift(npz, pos_d, osum, rules[default], table.categories),
    "oracle_images_per_channel": np.bincount(np.asarray(osum["n_images"].max(1), np.int64)).nonzero()[0].tolist(),
    "oracle_channels_per_stage": [int((odepth > j).sum()) for j in range(len(ojobs))],
    "verify_channels_per_stage": [int((depth > j).sum()) for j in range(len(vjobs))],
    "settings": {
      "seeds": len(seeds),
      "verify_stages": [len(s) for s in verify_stages],
      "oracle_stages": [len(s) for s in oracle_stages],
      "alphas": list(alphas),
      "visible": visible,
      "min_share": min_share,
      "confident": confident,
      "oracle_min_share": ORACLE_MIN_SHARE,
      "min_changed": min_changed,
    },
    "truly_local_per_layer": {
      name: np.bincount(layer[truth[:, i]], minlength=len(layout)).tolist() for i, name in enumerate(table.categories)
    },
  }
  jobs.atomic_write_json(workdir / "bench_verification.json", out)
  vs = " (CI)" if confident else ""
  main = ["official", default, f"official + verified{vs}", chosen]
  vrules = [f"{default} + verified{v}" for v in variants] + list(sweep)
  md = (
    markdown(rows, main)
    + "\n\nDecided channels only (oracle's 95% CI excludes 0.5):\n\n"
    + markdown(rows_decided, main)
    + "\n\nDetection rules alone:\n\n"
    + markdown(rows, det_rules)
    + f"\n\nEach rule + verification (mean share >= {min_share:g}, sequential):\n\n"
    + markdown(rows, [f"{r} + verified" for r in det_rules])
    + f"\n\nEach rule + verification (CI: mean - 95% CI >= {min_share:g}, sequential):\n\n"
    + markdown(rows, [f"{r} + verified (CI)" for r in det_rules])
    + "\n\nVerification rules (default detections):\n\n"
    + markdown(rows, vrules)
    + "\n\nVerification rules (default detections), decided channels only:\n\n"
    + markdown(rows_decided, vrules)
    + f"\n\nRule chosen on the even map positions ({split['chosen']}), scored on the odd ones:\n\n"
    + markdown(split["odd"], cands)
    + f"\n\nThe same, decided channels only (chosen on the even ones: {split_d['chosen']}):\n\n"
    + markdown(split_d["odd"], cands)
  )
  jobs.atomic_write_text(workdir / "bench_verification.md", md + "\n")
  np.savez(workdir / "oracle_summary.npz", truth=truth, decided=decided, mass=mass, frac=frac, **osum)
  return out


def _cost(timings, num_images):
  """Verification vs gradient maps of the same run: the maps of all num_images estimated from the timing sample
  (its time, compilation included, plus the steady rate for the other images), timed one after the other.
  None until both are timed."""
  need = ("gradient_maps_sample_s", "gradient_maps_sample_images", "gradient_maps_s_per_image", "verify_default_s")
  if not all(k in timings for k in need):
    return None
  maps = (
    timings["gradient_maps_sample_s"]
    + (num_images - timings["gradient_maps_sample_images"]) * timings["gradient_maps_s_per_image"]
  )
  return {
    "gradient_maps_s": round(maps, 1),
    "verify_s": round(timings["verify_default_s"], 1),
    "verify_over_maps": round(timings["verify_default_s"] / maps, 3),
  }


def _shift(vsum, vpos, osum, claimed, categories, lo=0.3, hi=0.7):
  """Per category: mean and std over the claimed channels near the threshold (oracle share in [lo, hi]) of
  (verification mean share - oracle mean share): sampling error of the image sets, shared by all channels."""
  row = {int(p): i for i, p in enumerate(vpos)}
  out = {}
  for k, name in enumerate(categories):
    p = [q for q in np.flatnonzero(claimed[:, k]) if int(q) in row and lo <= osum["vis_share_mean"][q, k] <= hi]
    if len(p) > 1:
      d = vsum["vis_share_mean"][[row[int(q)] for q in p], k] - osum["vis_share_mean"][p, k]
      out[name] = {"n": len(p), "mean": round(float(d.mean()), 3), "std": round(float(d.std()), 3)}
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
