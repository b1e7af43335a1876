"""Detection under a chosen score rule, then verification of every detection by editing.

The library side of `experiments.detect_local`:

  score_workdir(workdir, ...)   the detection sums of a workdir: stored gradient maps scored in
      a resumable job, or the statistics `experiments.gradient_maps --stream` summed instead.
  finalize(job, gm, score="mass", ...)   detections.json etc. (`locally_active.finalize`) under
      the chosen rule (`detection_scores`), each entry with its gradient-mass share, each
      category with the win rate of an average channel (the official rule's chance level).
  verify(job, gm, result, g, labels_fn, ...)   edits every detected channel and a layer-matched
      random baseline on held-out seeds (`verification`), writes beside detections.json:

  verified.json  {"settings": {...}, "categories": [{"category": "hair", "id": 10,
                   "detected": 12, "verified": [{"name": "6_113", "l1_share": {"mean", "std",
                   "ci95"}, "vis_share": {...}, "changed": {...}, "n_images", "detected": true,
                   ...}], "rejected": [...], "found_by_editing": 2, "baseline": {...}}]}
                 ("detected": false, with "detected_as": [categories], marks a channel detected for
                 other categories whose edits were verified inside this one: any_category)
  verified.npz   positions (M,) measured map positions, every summary array (M, K),
                 baseline (B,) positions, stages (M,) seed stages measured per position.
"""

import collections
import hashlib
import json
import pathlib
import types

import numpy as np

from ss_jax.stylespace import (
  detection_scores,
  detection_stats,
  locally_active,
  segmentation,
  channels as stylespace,
  verification,
)
from ss_jax.stylespace.gradmaps import storage, stream
from ss_jax.runtime import jobs


def finalize(
  job,
  gm,
  score=detection_scores.DEFAULT_SCORE,
  threshold=0.5,
  margin=0.25,
  mass_threshold=detection_scores.DEFAULT_MASS_THRESHOLD,
  top_k=20,
  layers=None,
  stats=None,
  maps_fn=None,
):
  """locally_active.finalize under rule `score`; returns (result, histogram) as it does.

  stats: DetectionStats (default: the stored job's, `detection_stats.load`); maps_fn: positions
  -> (M, P, P) mean maps (default: from the stored maps). A streamed workdir gives both (`score_workdir`).
  """
  if score not in detection_scores.SCORES:
    raise ValueError(f"unknown score {score!r}; known: {', '.join(detection_scores.SCORES)}")
  st = detection_stats.load(job, gm) if stats is None else stats
  frac, mass, area = st.fractions(), st.mean_mass_share(), st.mean_area_share()
  detector = None
  if score != "official":
    detector = detection_scores.detect(score, frac, mass, area, threshold, margin, mass_threshold).__getitem__
  extra = {"score": score, "mass_threshold": mass_threshold}
  result, hist = locally_active.finalize(
    job, gm, threshold, margin, top_k, layers, detector, extra, stats=st, maps_fn=maps_fn
  )
  excess = detection_scores.mass_excess(mass, area)
  for c in result["categories"]:
    k = c["id"]
    c["average_channel_win_rate"] = round(float(frac[:, k].mean()), 6)
    c["mean_area_share"] = round(float(area[k]), 6)
    for e in c["detected"] + c["top"]:
      e["mass"] = round(float(mass[e["position"], k]), 6)
      e["mass_excess"] = round(float(excess[e["position"], k]), 6)
  jobs.atomic_write_json(job.dir / "detections.json", result)
  return result, hist


Scored = collections.namedtuple("Scored", "job gm stats maps_fn labels_fn source table streamed")


def score_workdir(
  workdir, name="local", labels_dir=None, segmenter=None, categories=None, discount=None, progress_stream=None
):
  """The detection sums of a workdir, stored maps or streamed statistics -> Scored.

  Stored maps (WORKDIR/gradmaps): masks from labels_dir / segmenter / categories
  (`segmentation.labels_source`); the resumable job WORKDIR/<name> sums each shard
  (`detection_stats.accumulate`: official and gradient-mass sums; discount default 2.0).
  Streamed statistics (WORKDIR/gradstats only, `experiments.gradient_maps --stream`): the
  masks and discount were fixed by that run (giving any is a ValueError); job is a view with
  dir WORKDIR/<name> (stats.npz, all sums, is written there), gm a view of the gradient-map
  settings with dir WORKDIR/gradstats, maps_fn the streamed mean maps.
  Both give `finalize` and `verify` what they need; labels_fn also labels edited images
  unless the masks are label PNGs (source has "labels_dir").
  """
  sj = stream.open_stream(workdir)
  if sj is not None and not (pathlib.Path(workdir) / storage.GRADMAPS).is_dir():
    given = [
      f
      for f, v in (
        ("labels_dir", labels_dir),
        ("segmenter", segmenter),
        ("categories", categories),
        ("discount", discount),
      )
      if v is not None
    ]
    if given:
      raise ValueError(
        f"{sj.dir} holds streamed statistics: the masks and discount were fixed by "
        f"gradient_maps --stream; drop --{', --'.join(given)}"
      )
    st, source = sj.stats(), sj.spec["labels"]
    labels_fn = _lazy_labels(source)
    job = types.SimpleNamespace(dir=sj.dir.parent / name, spec=sj.spec)
    job.dir.mkdir(parents=True, exist_ok=True)
    jobs.atomic_save_npz(job.dir / "stats.npz", **st.to_arrays())
    gm = types.SimpleNamespace(dir=sj.dir, spec=sj.spec["gradient_maps"])
    table = segmentation.CategoryTable.from_json(sj.spec["table"])
    return Scored(job, gm, st, st.mean_maps, labels_fn, source, table, True)
  gm = storage.open_job(workdir, storage.GRADMAPS)
  labels_fn, source, table = segmentation.labels_source(labels_dir, segmenter, categories)
  job = locally_active.detection_job(workdir, gm, source, table, 2.0 if discount is None else discount, name)
  if progress_stream is not None:  # the summary line on stdout, the progress on progress_stream
    print(f"scoring {gm.num_shards} shards ({len(job.pending())} to do), categories: {table.name}", flush=True)
  locally_active.run_detection(job, gm, labels_fn, table, progress_stream=progress_stream)
  return Scored(job, gm, detection_stats.load(job, gm), None, labels_fn, source, table, False)


def _lazy_labels(source):
  """The labels_fn of a plain-data masks source, resolved (segmenter loaded) on first call."""
  fn = []

  def labels_fn(seeds, index, images):
    if not fn:
      fn.append(segmentation.labels_source(source.get("labels_dir"), source.get("segmenter"), "ffhq")[0])
    return fn[0](seeds, index, images)

  return labels_fn


def make_verify_job(
  workdir,
  gm,
  g,
  source,
  table,
  seeds,
  alphas=verification.DEFAULT_ALPHAS,
  visible=verification.DEFAULT_VISIBLE,
  sigma=None,
):
  """The edit-measure job of this gradient-map job's channels on held-out `seeds`.

  Its folder, WORKDIR/verify_<hash of the settings>, is shared by every analysis with the same
  settings (so reruns with other thresholds reuse the measured channels). sigma: (S,) std,
  default the std of the gradient-map images' styles (stored, or recomputed from a streamed job's seeds).
  """
  _, considered, _ = storage.job_layout(gm)
  if sigma is None:  # a stored job has the styles; a streamed one's view (no read) recomputes them
    sigma = (
      verification.sigma_from_gradient_maps(gm) if hasattr(gm, "read") else verification.sigma_from_seeds(g, gm.spec)
    )
  key = hashlib.sha1(
    json.dumps(
      [sorted(map(int, seeds)), list(map(float, alphas)), float(visible), source, table.name], sort_keys=True
    ).encode()
  ).hexdigest()[:10]
  return verification.make_job(
    workdir,
    g,
    considered,
    sigma,
    seeds,
    source,
    table,
    psi=gm.spec["psi"],
    class_idx=gm.spec["class_idx"],
    alphas=alphas,
    visible=visible,
    forbidden_seeds=gm.spec["seeds"],
    name=f"verify_{key}",
  )


def make_verify_stages(
  workdir,
  gm,
  g,
  source,
  table,
  seed_stages,
  alphas=verification.DEFAULT_ALPHAS,
  visible=verification.DEFAULT_VISIBLE,
  sigma=None,
):
  """One `make_verify_job` per list of held-out seeds (sequential stages, `verification.run_stages`);
  empty stages are dropped. ValueError if two stages share a seed."""
  stages = [[int(s) for s in st] for st in seed_stages if len(st)]
  seen = set()
  for st in stages:
    if seen & set(st):
      raise ValueError(f"verification stages share seeds (first {sorted(seen & set(st))[0]}); give disjoint seeds")
    seen |= set(st)
  if sigma is None and stages:
    sigma = (
      verification.sigma_from_gradient_maps(gm) if hasattr(gm, "read") else verification.sigma_from_seeds(g, gm.spec)
    )
  return [make_verify_job(workdir, gm, g, source, table, st, alphas, visible, sigma) for st in stages]


def _stat(summary, name, p, k):
  return {
    "mean": round(float(summary[f"{name}_mean"][p, k]), 5),
    "std": round(float(summary[f"{name}_std"][p, k]), 5),
    "ci95": round(float(summary[f"{name}_ci"][p, k]), 5),
  }


def verify(
  job,
  gm,
  result,
  g,
  labels_fn,
  vjob,
  min_share=verification.DEFAULT_MIN_SHARE,
  min_changed=verification.DEFAULT_MIN_CHANGED,
  baseline_per_layer=4,
  rows_per_step=64,
  progress_stream=None,
  confident=verification.DEFAULT_CONFIDENT,
  any_category=verification.DEFAULT_ANY_CATEGORY,
):
  """Measures the detections of `result` (and the baseline) and writes verified.json/.npz in job.dir.

  vjob: a verification job, or a list of them on disjoint seeds (sequential stages: a channel is measured
  on the next stage's images while the 95% CI of its visible share in a category that matters contains
  min_share, `verification.run_stages`). confident: see `verification.verified_mask`.
  any_category: a detected channel is judged for every category (its verdicts on all of them matter for the
  stages), and listed as verified wherever the rule holds, also in categories it was not detected for
  ("detected": false); False: only for the categories it was detected for. The random baseline channels
  are never claimed.
  """
  layout, considered, _ = storage.job_layout(gm)
  table = segmentation.CategoryTable.from_json(job.spec["table"])
  stages = list(vjob) if isinstance(vjob, (list, tuple)) else [vjob]
  det = {c["id"]: np.array([e["position"] for e in c["detected"]], np.int64) for c in result["categories"]}
  union = np.unique(np.concatenate([np.zeros(0, np.int64)] + list(det.values())))
  base = verification.baseline_positions(layout, considered, union, baseline_per_layer) if len(union) else union
  positions = np.union1d(union, base).astype(np.int64)
  row = {int(p): i for i, p in enumerate(positions)}
  wanted = np.zeros((len(positions), table.num_categories), bool)  # the verdicts that matter per channel
  for k, pos in det.items():
    wanted[[row[int(p)] for p in pos], k] = True
  if any_category:
    wanted[[row[int(p)] for p in union]] = True
  wanted[[row[int(p)] for p in base]] |= np.array(
    [any_category or len(det.get(k, ())) > 0 for k in range(table.num_categories)]
  )
  prog = None
  if progress_stream:
    prog = lambda j, n: jobs.Progress(n, f"verifying (stage {j + 1}/{len(stages)})", "channels", stream=progress_stream)
  summ, depth = None, np.zeros(len(positions), np.int64)
  if len(positions):
    summ, depth = verification.run_stages(
      stages, g, labels_fn, positions, wanted, min_share, min_changed, rows_per_step, prog
    )
  ok = verification.verified_mask(summ, min_share, min_changed, confident) if summ is not None else None
  open_ = verification.undecided(summ, min_share, min_changed) if summ is not None else None
  layer = stylespace.layer_of_flat(layout)[considered]
  by_pos = {}  # position -> (its detection entry, categories it was detected for)
  for c in result["categories"]:
    for e in c["detected"]:
      by_pos.setdefault(e["position"], (e, []))[1].append(c["category"])

  def measured(e, k, detected):
    i = row[e["position"]]
    return {
      "name": e["name"],
      "flat": e["flat"],
      "position": e["position"],
      "layer": e["layer"],
      "detected": detected,
      "n_images": int(summ["n_images"][i, k]),
      "stages": int(depth[i]),
      "open": bool(open_[i, k]),  # the 95% CI of vis_share still contains min_share after every stage
      **{n: _stat(summ, n, i, k) for n in verification.MEASURES},
    }

  cats = []
  for c in result["categories"]:
    k = c["id"]
    entries = {"verified": [], "rejected": []}
    for e in c["detected"]:
      entries["verified" if ok[row[e["position"]], k] else "rejected"].append(measured(e, k, True))
    found = []
    if any_category:
      mine = set(int(p) for p in det[k])
      for p in union:
        if int(p) not in mine and ok[row[int(p)], k]:
          e, cats_of = by_pos[int(p)]
          found.append({**measured(e, k, False), "detected_as": cats_of})
      found.sort(key=lambda m: -m["vis_share"]["mean"])
    entries["verified"] += found
    claimed = np.concatenate([det[k], np.array([m["position"] for m in found], np.int64)])
    cats.append(
      {
        "category": c["category"],
        "id": k,
        "detected": len(c["detected"]),
        "found_by_editing": len(found),
        **entries,
        "baseline": _baseline(summ, ok, row, base, layer, claimed, k) if len(claimed) else None,
      }
    )
  s = stages[0].spec
  settings = {
    "seeds": locally_active._seed_summary(s["seeds"]),
    "more_seeds": [locally_active._seed_summary(st.spec["seeds"]) for st in stages[1:]],
    "alphas": s["alphas"],
    "visible": s["visible"],
    "min_share": min_share,
    "min_changed": min_changed,
    "baseline_per_layer": baseline_per_layer,
    "psi": s["psi"],
    "labels": s["labels"],
    "measures": list(verification.MEASURES),
    "store": stages[0].dir.name,
    "stores": [st.dir.name for st in stages],
    "confident": bool(confident),
    "any_category": bool(any_category),
    "rule": (
      f"vis_share {'- ci95 ' if confident else ''}>= min_share and changed >= min_changed (means over held-out "
      "images; while the 95% CI of vis_share contains min_share, the channel is measured on the next seeds too)"
      + ("; a detected channel is judged for every category" if any_category else "")
    ),
  }
  out = {"settings": settings, "categories": cats}
  jobs.atomic_write_json(job.dir / "verified.json", out)
  arrays = {k: v for k, v in (summ or {}).items()}
  jobs.atomic_save_npz(
    job.dir / "verified.npz",
    positions=positions,
    baseline=base,
    stages=depth,
    categories=np.array(table.categories),
    **arrays,
  )
  return out


def _baseline(summ, ok, row, base, layer, det_k, k):
  """Layer-matched baseline of category k: per layer of its claimed channels (detected, and found by editing),
  the mean over that layer's random channels, weighted by the number of claimed channels in the layer."""
  w_sum, acc = 0.0, {n: 0.0 for n in verification.MEASURES + ("verified_rate",)}
  for L, cnt in zip(*np.unique(layer[det_k], return_counts=True)):
    b = [row[int(p)] for p in base if layer[p] == L]
    if not b:
      continue
    for n in verification.MEASURES:
      acc[n] += cnt * float(np.mean(summ[f"{n}_mean"][b, k]))
    acc["verified_rate"] += cnt * float(np.mean(ok[b, k]))
    w_sum += cnt
  out = {n: round(v / w_sum, 5) for n, v in acc.items()} if w_sum else {}
  out["num_channels"] = int(sum(layer[p] in set(layer[det_k].tolist()) for p in base))
  return out
