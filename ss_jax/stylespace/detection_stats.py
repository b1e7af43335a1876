"""Per-image reductions of gradient maps and their sums over images: the one statistics type.

Every detection rule (`locally_active.select`, `detection_scores`) reads the sums of this
module; stored maps (`locally_active.run_detection`, one file per shard) and streamed maps
(`ss_jax.stylespace.gradmaps.stream`, one running total) are reduced by the same `accumulate`
and summed by the same `sum_shards`, so both paths give bit-identical sums. For image i
(category map on the P x P grid, Q = P * P cells), considered channel c (its map
m_ic >= 0, (P, P)) and category k present in image i:

  official (StyleSpace Sec. 4.1, `align_mask.py`, `semantic_channel.py`):
    area_ik      = cells of k
    top_ick      = the area_ik largest cells of m_ic (ties: lower row-major cell index
                   first; cells whose gradient is exactly 0 never count)
    n_ick        = |top_ick ∩ k|
    score_ick    = n_ick / area_ik ** d             (discount d = 2: prefer small regions)
    win_ic       = argmax_k score_ick over present k (ties: lowest category id; no winner
                   when every score is 0, e.g. a zero map)
  gradient mass:
    mass_in_ick  = sum of m_ic over the cells of k
    mass_ic      = sum of m_ic over all cells
    share_ick    = mass_in_ick / mass_ic   (0 when the map is all zero)
    area share   = area_ik / Q             (a uniform map's share: the baseline)

Differences from the official code, all documented choices: the top set is exactly the
area_k largest cells (the official `percentile` + `>` can keep a few cells more or less on
ties), zero-gradient cells never count, and an image where all scores are 0 gives no
winner (the official `nanargmax` would credit the first present category).

`DetectionStats` holds the sums over images (all (C, K) sums run over the images
that contain k):

  num_images                      images seen
  present (K,) int64              images containing k
  wins (C, K) int64               images whose winning category is k (official)
  score_sum, coverage_sum (C, K)  sums of n / area**d and n / area (official)
  mass_share_sum (C, K)           sum of share_ick
  mass_share_sq_sum (C, K)        sum of share_ick ** 2 (spread over images)
  mass_inside_sum (C, K)          sum of mass_in_ick
  mass_total_sum (C, K)           sum of mass_ic
  area_share_sum (K,)             sum of area_ik / Q
  map_sum (C, P, P) or None       sum of m_ic over all images (mean maps; streaming only)

All float sums are float64; shards are added in shard order (`a + b`, `sum_shards`), so a
rerun gives bit-identical totals. Derived per-channel quantities: `fractions()` (the
official win fraction, what `locally_active.select` thresholds), `mean_scores()`,
`mean_coverage()`, `mean_mass_share()`, `pooled_mass_share()` (sum of mass inside / sum
of mass), `mean_area_share()` and `mass_share_std()`.

On disk (`to_arrays`, one npz): a stored-maps score shard (WORKDIR/<name>/shard_XXXXX.npz,
plus its `cats`), a streamed total (WORKDIR/gradstats/total_XXXXX.npz, with map_sum) and
detect_local's stats.npz. Score shards written before the gradient-mass sums existed hold
only the official keys; `load` re-sums those from the stored maps once (cached in
WORKDIR/<name>/detection_stats.npz).
"""

import dataclasses
from typing import Optional

import numpy as np

from ss_jax.runtime import jobs
from ss_jax.stylespace import segmentation
from ss_jax.stylespace.gradmaps import storage

OFFICIAL_KEYS = ("wins", "present", "score_sum", "coverage_sum", "num_images")
MASS_KEYS = ("mass_share_sum", "mass_share_sq_sum", "mass_inside_sum", "mass_total_sum", "area_share_sum")
STATS_FILE = "detection_stats.npz"  # load's cache for score shards without the mass sums

_CHUNK_ELEMENTS = 1 << 23  # cells of (images x channels x P x P) reduced at once (~100 MB temporaries)

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


# ----------------------------------------------------------------------------- sums


def _div(a, b):
  a = np.asarray(a, np.float64)
  b = np.broadcast_to(np.asarray(b, np.float64), a.shape)
  return np.divide(a, b, out=np.zeros(a.shape), where=b > 0)


@dataclasses.dataclass
class DetectionStats:
  """Sums over images (see the module docstring); add two to merge shards."""

  num_images: int
  present: np.ndarray
  wins: np.ndarray
  score_sum: np.ndarray
  coverage_sum: np.ndarray
  mass_share_sum: np.ndarray
  mass_share_sq_sum: np.ndarray
  mass_inside_sum: np.ndarray
  mass_total_sum: np.ndarray
  area_share_sum: np.ndarray
  map_sum: Optional[np.ndarray] = None

  @classmethod
  def zeros(cls, num_channels, num_categories, pooled=None):
    ck = lambda dt=np.float64: np.zeros((num_channels, num_categories), dt)
    maps = None if pooled is None else np.zeros((num_channels, pooled, pooled))
    return cls(
      0,
      np.zeros(num_categories, np.int64),
      ck(np.int64),
      ck(),
      ck(),
      ck(),
      ck(),
      ck(),
      ck(),
      np.zeros(num_categories),
      maps,
    )

  def __add__(self, o):
    f = lambda name: getattr(self, name) + getattr(o, name)
    if (self.map_sum is None) != (o.map_sum is None):
      raise ValueError("cannot add statistics with and without map sums")
    return DetectionStats(
      **{k.name: f(k.name) for k in dataclasses.fields(self) if k.name != "map_sum"},
      map_sum=None if self.map_sum is None else self.map_sum + o.map_sum,
    )

  def fractions(self):
    """(C, K) official win fraction: wins / images containing k."""
    return _div(self.wins, self.present)

  def mean_scores(self):
    """(C, K) mean official score n / area**d over images containing k."""
    return _div(self.score_sum, self.present)

  def mean_coverage(self):
    """(C, K) mean share of k covered by c's top-area cells, over images containing k."""
    return _div(self.coverage_sum, self.present)

  def mean_mass_share(self):
    """(C, K) mean over images containing k of the share of c's map mass inside k."""
    return _div(self.mass_share_sum, self.present)

  def mass_share_std(self):
    """(C, K) standard deviation over images containing k of that share."""
    mean = self.mean_mass_share()
    return np.sqrt(np.maximum(_div(self.mass_share_sq_sum, self.present) - mean**2, 0.0))

  def pooled_mass_share(self):
    """(C, K) sum of mass inside k / sum of all mass, over images containing k."""
    return _div(self.mass_inside_sum, self.mass_total_sum)

  def mean_area_share(self):
    """(K,) mean share of the grid covered by k (what a uniform map would score)."""
    return _div(self.area_share_sum, self.present)

  def mean_maps(self, positions=None):
    """(M, P, P) float32 mean map over all images (streaming statistics only)."""
    if self.map_sum is None:
      raise ValueError("these statistics hold no map sums (stored-maps path: locally_active.mean_maps)")
    m = self.map_sum if positions is None else self.map_sum[np.asarray(positions, np.int64)]
    return (m / max(self.num_images, 1)).astype(np.float32)

  def to_arrays(self):
    d = {k.name: getattr(self, k.name) for k in dataclasses.fields(self) if k.name not in ("map_sum",)}
    d["num_images"] = np.array([self.num_images], np.int64)
    if self.map_sum is not None:
      d["map_sum"] = self.map_sum
    return d

  @classmethod
  def from_arrays(cls, d):
    """From to_arrays() output (map_sum optional)."""
    missing = [k for k in OFFICIAL_KEYS + MASS_KEYS if k not in d]
    if missing:
      raise ValueError(f"statistics lack {', '.join(missing)} (written by an older version? rerun the scoring)")
    f = lambda k: np.asarray(d[k], np.float64)
    return cls(
      int(np.sum(d["num_images"])),
      d["present"].astype(np.int64),
      d["wins"].astype(np.int64),
      f("score_sum"),
      f("coverage_sum"),
      f("mass_share_sum"),
      f("mass_share_sq_sum"),
      f("mass_inside_sum"),
      f("mass_total_sum"),
      f("area_share_sum"),
      None if "map_sum" not in d else f("map_sum"),
    )


def accumulate(maps, cats, num_categories, discount=2.0, chunk_size=None, with_map_sum=False):
  """Sums of a batch of images -> DetectionStats.

  Args:
    maps: (N, C, P, P) gradient maps (any float dtype; an array or memory map).
    cats: (N, P, P) category ids (already reduced to P x P).
    num_categories: K.
    discount: d in the official n / area**d.
    chunk_size: images reduced at once; default: about 8M map cells.
    with_map_sum: also sum the maps themselves (C, P, P).
  """
  n_img, c, p = maps.shape[0], maps.shape[1], maps.shape[2]
  if len(cats) != n_img:
    raise ValueError(f"{len(cats)} category maps for {n_img} gradient maps")
  k = num_categories
  per = chunk_size or max(1, _CHUNK_ELEMENTS // max(1, c * p * p))
  total = DetectionStats.zeros(c, k, p if with_map_sum else None)
  for i in range(0, n_img, per):
    m = np.asarray(maps[i : i + per], np.float32)
    cat = np.asarray(cats[i : i + per])
    # official: top-area overlaps, scores, winners
    n, area = overlap_counts(m, cat, k)
    score = overlap_scores(n, area, discount)
    win = winners(score)
    wins = np.stack([np.sum(win == j, axis=0) for j in range(k)], axis=1).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
      cover = np.where(area[:, None] > 0, n / np.maximum(area, 1)[:, None], 0.0)
    # gradient mass
    flat = m.reshape(len(m), c, p * p).astype(np.float64)
    lab = cat.reshape(len(m), p * p).astype(np.int64)
    onehot = (lab[..., None] == np.arange(k)).astype(np.float64)  # (B, Q, K)
    present = onehot.sum(1) > 0  # (B, K), = area > 0
    inside = np.matmul(flat, onehot)  # (B, C, K)
    mass = flat.sum(-1)  # (B, C)
    share = _div(inside, mass[..., None])
    pm = present[:, None, :]
    total = total + DetectionStats(
      len(m),
      present.sum(0).astype(np.int64),
      wins,
      np.nansum(score, axis=0),
      cover.sum(0),
      np.where(pm, share, 0.0).sum(0),
      np.where(pm, share**2, 0.0).sum(0),
      np.where(pm, inside, 0.0).sum(0),
      np.where(pm, mass[..., None], 0.0).sum(0),
      (onehot.sum(1) / (p * p)).sum(0),
      flat.reshape(len(m), c, p, p).sum(0) if with_map_sum else None,
    )
  return total


def sum_shards(read, shards, total=None):
  """total + the DetectionStats of read(i) for i in shards, added in that order (the one summing loop).

  read: shard index -> arrays (`jobs.ShardedJob.read`); shard order makes reruns bit-identical.
  Returns None when there is nothing to add to a None total.
  """
  for i in shards:
    st = DetectionStats.from_arrays(read(i))
    total = st if total is None else total + st
  return total


def load(job, gm):
  """DetectionStats of a complete stored-maps score job (`locally_active.run_detection`).

  Shards written by the current code hold every sum (`sum_shards`). Score shards written before
  the gradient-mass sums existed (official keys and cats only) get the mass sums re-summed from
  the stored gradient maps gm (their official sums are kept exactly), cached in job.dir/STATS_FILE.
  """
  if all(set(MASS_KEYS) <= set(job.read(i).keys()) for i in range(job.num_shards)):
    return sum_shards(job.read, range(job.num_shards))
  path = job.dir / STATS_FILE
  key = np.array([job.num_shards, gm.num_shards])
  if path.is_file():
    d = jobs.load_npz(path)
    if np.array_equal(d.pop("key"), key):
      return DetectionStats.from_arrays(d)
  k, total = len(job.spec["table"]["categories"]), None
  for i in range(job.num_shards):
    d = job.read(i)
    st = accumulate(storage.read_gradient_maps(gm, i)["maps"], d["cats"], k, job.spec["discount"])
    official = {n: d[n] for n in OFFICIAL_KEYS}  # the shard's own official sums, exactly
    st = DetectionStats.from_arrays({**st.to_arrays(), **official})
    total = st if total is None else total + st
  jobs.atomic_save_npz(path, key=key, **total.to_arrays())
  return total
