"""Locally-active channels: the paper's decision rule over gradient maps x semantic masks
(StyleSpace Sec. 4.1, `align_mask.py`, `semantic_channel.py`, `MAdvance.py:GetRank`).

For image i, considered style channel c (flat S order, toRGB left out unless asked) and
category k present in the image's R x R category map (`segmentation.reduce_labels`), channel c
"wins" the category with the largest top-area overlap score n / area**d (d = 2: prefer small
regions); the per-image reductions and their sums over images are defined once in
`detection_stats` (`overlap_counts`, `DetectionStats`, `accumulate`).

Over images, frac[c, k] = #images that c wins for k / #images containing k (so a row
can sum to more than 1; `DetectionStats.fractions()`). Channel c is locally active for k
when frac[c, k] > threshold (0.5) and frac[c, k] - max_{j != k} frac[c, j] > margin (0.25).

Images are processed in chunks and reduced to per-shard sums, so gradient maps of 1,000
images never need to be in memory at once. The shard jobs (gradient maps:
`gradmaps.api.run_job`, detection: `run_detection`) are resumable `jobs.ShardedJob`s under one
work directory:

  WORKDIR/gradmaps/shard_XXXXX.npz   seeds, index (N,), styles (N, S) float32 (flat S),
      images (N, H, W, C) uint8, maps (N, C, P, P) float32, or float16 divided by scale
      (N, C) (each map's max; ~3 significant digits, ranking ties more likely). Maps take
      C * P * P * 4 bytes per image: FFHQ 1024 conv-only 24.8 MB (24.8 GB per 1,000
      images; half with float16; `ss_jax.stylespace.gradmaps.stream` keeps only sums instead).
  WORKDIR/local/shard_XXXXX.npz      per gradmaps shard: the `DetectionStats` arrays (wins,
      score_sum, coverage_sum, mass sums (C, K), present, area_share_sum (K,), num_images (1,))
      and cats (N, P, P) uint8.
  WORKDIR/local/{local.npz, detections.json, layer_histogram.json, mean_maps.npz}
      written by `finalize` (cheap; thresholds can change without recomputing shards).
"""

import functools

import numpy as np

from ss_jax.runtime import jobs
from ss_jax.stylespace.gradmaps.storage import job_layout, read_gradient_maps
from ss_jax.stylespace import detection_stats, segmentation, channels as stylespace

# ----------------------------------------------------------------------------- decision rule


def select(frac, target, threshold=0.5, margin=0.25):
  """StyleSpace's `GetRank`: channels locally active for `target`.

  Args:
    frac: (C, K) fractions.
    target: a category id, or a tuple of ids merged into one region (their fractions summed).
    threshold, margin: frac > threshold and frac - best other category > margin.
  Returns:
    (positions (M,) int64 sorted by target fraction descending (ties: lower position),
     top (C,) target fraction, second (C,) best fraction among the other categories).
  """
  frac = np.asarray(frac, np.float64)
  tgt = [target] if np.isscalar(target) else list(target)
  others = [k for k in range(frac.shape[1]) if k not in tgt]
  top = frac[:, tgt].sum(1)
  second = frac[:, others].max(1) if others else np.zeros(len(frac))
  ok = (top > threshold) & (top - second > margin)
  pos = np.flatnonzero(ok)
  return pos[np.argsort(-top[pos], kind="stable")], top, second


def detect_all(frac, threshold=0.5, margin=0.25):
  """Category id -> (M,) positions of its locally-active channels, ranked."""
  return {k: select(frac, k, threshold, margin)[0] for k in range(frac.shape[1])}


def layer_histogram(layout, channels, detections, num_categories):
  """(num_layers, K) int64 detections per style layer and category.

  channels: (C,) flat S index of each map position; detections: {k: positions}.
  """
  layer = stylespace.layer_of_flat(layout)[np.asarray(channels)]
  hist = np.zeros((len(layout), num_categories), np.int64)
  for k, pos in detections.items():
    np.add.at(hist[:, k], layer[pos], 1)
  return hist


def parse_layers(layout, spec):
  """'6,8-9' -> sorted style-layer indices; a one-line error for out-of-range layers."""
  out = set()
  for part in str(spec).split(","):
    part = part.strip()
    if not part:
      continue
    a, _, b = part.partition("-")
    if not a.isdigit() or (b and not b.isdigit()):
      raise ValueError(f"bad layer spec {spec!r}: use e.g. '6,8-9'")
    for layer in range(int(a), int(b or a) + 1):
      if not 0 <= layer < len(layout):
        raise ValueError(f"style layer {layer} out of range: this model has layers 0..{len(layout) - 1}")
      out.add(layer)
  if not out:
    raise ValueError("no style layers given")
  return sorted(out)


# ----------------------------------------------------------------------------- detection job


def detection_job(workdir, gm, labels_source, table, discount=2.0, name="local"):
  """Creates or re-opens the scoring job over a complete gradient-map job."""
  if not gm.complete():
    missing = sum(not gm.done(i) for i in range(gm.num_shards))
    raise ValueError(
      f"gradient maps in {gm.dir} are incomplete ({missing} of {gm.num_shards} shards "
      "missing); rerun experiments.gradient_maps first"
    )
  spec = {
    "kind": "locally_active",
    "gradient_maps": gm.spec,
    "labels": labels_source,
    "table": table.to_dict(),
    "discount": float(discount),
  }
  return jobs.ShardedJob(workdir, name, spec, gm.num_shards)


def run_detection(job, gm, labels_fn, table, chunk_size=None, progress_stream=None):
  """Scores the missing shards: each shard's `detection_stats.accumulate` sums and its category maps.

  labels_fn: (seeds (N,), index (N,), images (N, H, W, C) uint8) -> (N, H, W) parser class labels
    (segmentation.labels_from_dir / labels_from_segmenter).
  """
  _, _, pooled = job_layout(gm)
  k = table.num_categories
  pending = job.pending()
  prog = jobs.Progress(len(pending), "scoring", "shards", stream=progress_stream) if progress_stream else None
  for i in pending:
    d = read_gradient_maps(gm, i)
    labels = labels_fn(d["seeds"], d["index"], d["images"])
    cats = segmentation.check_labels(labels, table, d["images"].shape[1:3])
    cats = segmentation.reduce_labels(cats, pooled, k)
    st = detection_stats.accumulate(d["maps"], cats, k, job.spec["discount"], chunk_size)
    job.write(i, cats=cats, **st.to_arrays())
    if prog:
      prog.update()
  return job


def mean_maps(gm, positions):
  """(M, P, P) float32 mean gradient map over all images of the map positions `positions`."""
  pos, acc, n = np.asarray(positions, np.int64), 0.0, 0
  for i in range(gm.num_shards):
    m = read_gradient_maps(gm, i)["maps"][:, pos].astype(np.float64)
    acc, n = acc + m.sum(0), n + len(m)
  return (acc / max(n, 1)).astype(np.float32)


def _entry(layout, flat, pos, top, second, score, cover):
  layer, ch = stylespace.to_layer_channel(layout, int(flat))
  L = layout[int(layer)]
  return {
    "name": f"{int(layer)}_{int(ch)}",
    "flat": int(flat),
    "position": int(pos),
    "layer": int(layer),
    "layer_name": L.name,
    "resolution": L.resolution,
    "fraction": round(float(top), 6),
    "margin": round(float(top - second), 6),
    "mean_score": float(score),
    "mean_coverage": round(float(cover), 6),
  }


def finalize(
  job,
  gm,
  threshold=0.5,
  margin=0.25,
  top_k=20,
  layers=None,
  detector=None,
  settings_extra=None,
  stats=None,
  maps_fn=None,
):
  """Applies the decision rule to the summed shards and writes the results into job.dir.

  layers: optional style-layer indices; only their channels are ranked and detected.
  detector: category id -> ranked positions replacing the paper's rule (`select`); settings_extra: added.
  stats: DetectionStats (default: the job's shards, `detection_stats.load`); maps_fn: positions ->
    (M, P, P) mean maps replacing the stored maps' (streaming: `DetectionStats.mean_maps`).
  Returns (detections dict as in detections.json, histogram (num_layers, K) int64). Files: local.npz
  (fractions (C, K), wins, present, mean_score, mean_coverage, channels (C,) flat S, categories),
  detections.json, layer_histogram.json, mean_maps.npz (positions, channels, maps (M, P, P)).
  """
  layout, channels, _ = job_layout(gm)
  table = segmentation.CategoryTable.from_json(job.spec["table"])
  st = detection_stats.load(job, gm) if stats is None else stats
  frac, score, cover = st.fractions(), st.mean_scores(), st.mean_coverage()
  allowed = np.ones(len(channels), bool)
  if layers is not None:
    allowed = np.isin(stylespace.layer_of_flat(layout)[channels], layers)
  cats = []
  dets = {}
  for k, cname in enumerate(table.categories):
    pos, top, second = select(frac, k, threshold, margin)
    pos = np.asarray(pos if detector is None else detector(k), np.int64)
    pos = pos[allowed[pos]]
    dets[k] = pos
    ranked = np.flatnonzero(allowed)
    ranked = ranked[np.argsort(-top[ranked], kind="stable")][: top_k if st.present[k] else 0]
    cats.append(
      {
        "category": cname,
        "id": k,
        "present_images": int(st.present[k]),
        "detected": [_entry(layout, channels[p], p, top[p], second[p], score[p, k], cover[p, k]) for p in pos],
        "top": [_entry(layout, channels[p], p, top[p], second[p], score[p, k], cover[p, k]) for p in ranked],
      }
    )
  hist = layer_histogram(layout, channels, dets, table.num_categories)
  settings = {
    "threshold": threshold,
    "margin": margin,
    "discount": job.spec["discount"],
    "top_k": top_k,
    "layers": None if layers is None else list(layers),
    "num_images": st.num_images,
    "labels": job.spec["labels"],
    "table": table.name,
    "categories": list(table.categories),
    "gradient_maps": {k: v for k, v in gm.spec.items() if k != "seeds"},
    "seeds": _seed_summary(gm.spec["seeds"]),
    **(settings_extra or {}),
  }
  result = {"settings": settings, "categories": cats}
  out = job.dir
  jobs.atomic_save_npz(
    out / "local.npz",
    fractions=frac,
    wins=st.wins,
    present=st.present,
    mean_score=score,
    mean_coverage=cover,
    channels=channels,
    categories=np.array(table.categories),
  )
  hist_json = {
    "categories": list(table.categories),
    "layers": [
      {
        "index": L.index,
        "name": L.name,
        "resolution": L.resolution,
        "kind": L.kind,
        "counts": hist[L.index].tolist(),
        "total": int(hist[L.index].sum()),
      }
      for L in layout
    ],
  }
  jobs.atomic_write_json(out / "layer_histogram.json", hist_json)
  union = np.unique(np.concatenate([p for p in dets.values()] + [np.zeros(0, np.int64)])).astype(np.int64)
  empty = np.zeros((0,) + (gm.spec["pooled"],) * 2, np.float32)
  jobs.atomic_save_npz(
    out / "mean_maps.npz",
    positions=union,
    channels=channels[union],
    maps=(maps_fn or functools.partial(mean_maps, gm))(union) if len(union) else empty,
  )
  jobs.atomic_write_json(out / "detections.json", result)
  return result, hist


def _seed_summary(seeds):
  """Compact, exact description of a seed list ('0-999' style)."""
  runs = []
  for s in seeds:
    if runs and s == runs[-1][1] + 1:
      runs[-1][1] = s
    else:
      runs.append([s, s])
  return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
