"""Locally-active channels: gradient maps x semantic masks (StyleSpace Sec. 4.1, `align_mask.py`,
`semantic_channel.py`, `MAdvance.py:GetRank`).

For image i, considered style channel c (flat S order, toRGB left out unless asked)
and category k present in the image's R x R category map (`segmentation.reduce_labels`):

  area_k   = cells of category k
  top_ck   = the area_k largest cells of c's gradient map (ties: lower row-major cell
             index first; cells whose gradient is exactly 0 never count)
  n_ck     = |top_ck ∩ category k|
  score_ck = n_ck / area_k ** d                    (discount d = 2: prefer small regions)
  win_c    = argmax_k score_ck over present k      (ties: lowest category id; no winner
                                                    when every score is 0, e.g. a zero map)

Over images, frac[c, k] = #images that c wins for k / #images containing k (so a row
can sum to more than 1). Channel c is locally active for k when frac[c, k] > threshold
(0.5) and frac[c, k] - max_{j != k} frac[c, j] > margin (0.25).

Differences from the official code, all documented choices: the top set is exactly
the area_k largest cells (the official `percentile` + `>` can keep a few cells more or
less on ties), zero-gradient cells never count, and an image where all scores are 0
gives no winner (the official `nanargmax` would credit the first present category).

Everything is vectorised over channels and categories; images are processed in
chunks and reduced to per-shard sums (`LocalStats`), so gradient maps of 1,000
images never need to be in memory at once. The shard jobs (gradient maps:
`gradmaps.api.run_job`, detection: `run_detection`) are resumable `jobs.ShardedJob`s under one
work directory:

  WORKDIR/gradmaps/shard_XXXXX.npz   seeds, index (N,), styles (N, S) float32 (flat S),
      images (N, H, W, C) uint8, maps (N, C, P, P) float32, or float16 divided by scale
      (N, C) (each map's max; ~3 significant digits, ranking ties more likely). Maps take
      C * P * P * 4 bytes per image: FFHQ 1024 conv-only 24.8 MB (24.8 GB per 1,000
      images; half with float16; `ss_jax.stylespace.gradmaps.stream` keeps only sums instead).
  WORKDIR/local/shard_XXXXX.npz      per gradmaps shard: wins, score_sum, coverage_sum
      (C, K), present (K,), num_images (1,), cats (N, P, P) uint8 (+ detection_stats sums).
  WORKDIR/local/{local.npz, detections.json, layer_histogram.json, mean_maps.npz}
      written by `finalize` (cheap; thresholds can change without recomputing shards).
"""

import dataclasses
import functools

import numpy as np

from ss_jax.runtime import jobs
from ss_jax.stylespace.gradmaps.storage import job_layout, read_gradient_maps
from ss_jax.stylespace import segmentation, channels as stylespace

_CHUNK_ELEMENTS = 1 << 23  # cells of (images x channels x P x P) scored at once (~100 MB temporaries)

# ----------------------------------------------------------------------------- per-image scoring


def overlap_counts(maps, cats, num_categories):
  """Top-area overlap of every channel's map with every category.

  Args:
    maps: (B, C, P, P) float gradient maps.
    cats: (B, P, P) int category ids.
    num_categories: K.
  Returns:
    n (B, C, K) int32 = |top_ck ∩ category k| and area (B, K) int32.
  """
  maps = np.asarray(maps, np.float32)
  b, c = maps.shape[:2]
  q = maps.shape[2] * maps.shape[3]
  m = maps.reshape(b, c, q)
  cats = np.asarray(cats).reshape(b, q).astype(np.int64)
  if cats.shape[1] != q:
    raise ValueError(f"category maps of {cats.shape[1]} cells do not match gradient maps of {q} cells")
  area = segmentation.category_areas(cats, num_categories)
  # rank[b, c, j] = position of cell j in c's map sorted descending (stable: lower index first).
  order = np.argsort(-m, axis=-1, kind="stable")
  rank = np.empty(order.shape, np.int32)
  np.put_along_axis(rank, order, np.arange(q, dtype=np.int32)[None, None], axis=-1)
  # Every cell belongs to exactly one category k, so "in top_ck" only needs k's own area.
  own_area = np.take_along_axis(area, cats, axis=1)  # (B, Q)
  hit = (rank < own_area[:, None, :]) & (m > 0)
  onehot = (cats[..., None] == np.arange(num_categories)).astype(np.float32)  # (B, Q, K)
  n = np.matmul(hit.astype(np.float32), onehot)  # exact: counts <= Q
  return n.astype(np.int32), area


def overlap_scores(n, area, discount=2.0):
  """(B, C, K) counts, (B, K) areas -> (B, C, K) float64 n / area**discount, NaN where area = 0."""
  area = np.asarray(area, np.float64)[:, None, :]
  with np.errstate(divide="ignore", invalid="ignore"):
    s = np.asarray(n, np.float64) / area**discount
  return np.where(area > 0, s, np.nan)


def winners(scores):
  """(B, C, K) scores with NaN for absent categories -> (B, C) int32 winning category, -1 for none."""
  s = np.where(np.isnan(scores), -np.inf, scores)
  win = np.argmax(s, axis=-1).astype(np.int32)
  return np.where(np.max(s, axis=-1) > 0, win, -1)


# ----------------------------------------------------------------------------- accumulation


@dataclasses.dataclass
class LocalStats:
  """Sums over images; add two to merge shards.

  wins (C, K) int64: images where the channel's winning category is k.
  present (K,) int64: images containing k.
  score_sum (C, K) float64: sum of n/area**d over images containing k.
  coverage_sum (C, K) float64: sum of n/area (share of k covered by the top cells).
  num_images: images seen.
  """

  wins: np.ndarray
  present: np.ndarray
  score_sum: np.ndarray
  coverage_sum: np.ndarray
  num_images: int

  @classmethod
  def zeros(cls, num_channels, num_categories):
    ck = (num_channels, num_categories)
    return cls(np.zeros(ck, np.int64), np.zeros(num_categories, np.int64), np.zeros(ck), np.zeros(ck), 0)

  def __add__(self, o):
    return LocalStats(
      self.wins + o.wins,
      self.present + o.present,
      self.score_sum + o.score_sum,
      self.coverage_sum + o.coverage_sum,
      self.num_images + o.num_images,
    )

  def fractions(self):
    """(C, K) float64: wins / images containing the category (0 for categories never present)."""
    return np.divide(self.wins, self.present, out=np.zeros(self.wins.shape), where=self.present > 0)

  def mean_scores(self):
    return np.divide(self.score_sum, self.present, out=np.zeros(self.score_sum.shape), where=self.present > 0)

  def mean_coverage(self):
    return np.divide(self.coverage_sum, self.present, out=np.zeros(self.coverage_sum.shape), where=self.present > 0)

  def to_arrays(self):
    return {
      "wins": self.wins,
      "present": self.present,
      "score_sum": self.score_sum,
      "coverage_sum": self.coverage_sum,
      "num_images": np.array([self.num_images], np.int64),
    }

  @classmethod
  def from_arrays(cls, d):
    return cls(
      d["wins"].astype(np.int64),
      d["present"].astype(np.int64),
      d["score_sum"].astype(np.float64),
      d["coverage_sum"].astype(np.float64),
      int(np.sum(d["num_images"])),
    )


def accumulate(maps, cats, num_categories, discount=2.0, chunk_size=None):
  """Scores a batch of images in chunks -> LocalStats.

  Args:
    maps: (N, C, P, P) gradient maps (any float dtype; an array or memory map).
    cats: (N, P, P) category ids (already reduced to P x P).
    num_categories: K.
    discount: d in n / area**d.
    chunk_size: images scored at once; default: about 8M map cells.
  """
  n_img, c = maps.shape[:2]
  if len(cats) != n_img:
    raise ValueError(f"{len(cats)} category maps for {n_img} gradient maps")
  per = chunk_size or max(1, _CHUNK_ELEMENTS // max(1, c * maps.shape[2] * maps.shape[3]))
  total = LocalStats.zeros(c, num_categories)
  for i in range(0, n_img, per):
    n, area = overlap_counts(maps[i : i + per], cats[i : i + per], num_categories)
    present = area > 0
    score = overlap_scores(n, area, discount)
    win = winners(score)
    wins = np.stack([np.sum(win == k, axis=0) for k in range(num_categories)], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
      cover = np.where(present[:, None], n / np.maximum(area, 1)[:, None], 0.0)
    total = total + LocalStats(
      wins.astype(np.int64), present.sum(0).astype(np.int64), np.nansum(score, axis=0), cover.sum(0), len(n)
    )
  return total


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


def run_detection(job, gm, labels_fn, table, chunk_size=None, progress_stream=None, accumulate_fn=None):
  """Scores the missing shards.

  labels_fn: (seeds (N,), index (N,), images (N, H, W, C) uint8) -> (N, H, W) parser class labels
    (segmentation.labels_from_dir / labels_from_segmenter).
  accumulate_fn: default `accumulate`; `detection_stats.accumulate` adds the gradient-mass sums.
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
    st = (accumulate_fn or accumulate)(d["maps"], cats, k, job.spec["discount"], chunk_size)
    job.write(i, cats=cats, **st.to_arrays())
    if prog:
      prog.update()
  return job


def load_stats(job):
  """Sum of every shard's LocalStats (shard order, so reruns give identical sums)."""
  total = None
  for i in range(job.num_shards):
    st = LocalStats.from_arrays(job.read(i))
    total = st if total is None else total + st
  return total


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
  stats, maps_fn: LocalStats and positions -> (M, P, P) mean maps replacing the shards' (streaming).
  Returns (detections dict as in detections.json, histogram (num_layers, K) int64). Files: local.npz
  (fractions (C, K), wins, present, mean_score, mean_coverage, channels (C,) flat S, categories),
  detections.json, layer_histogram.json, mean_maps.npz (positions, channels, maps (M, P, P)).
  """
  layout, channels, _ = job_layout(gm)
  table = segmentation.CategoryTable.from_json(job.spec["table"])
  st = load_stats(job) if stats is None else stats
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
