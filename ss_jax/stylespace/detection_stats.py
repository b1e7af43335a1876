"""Per-category sums of gradient maps that every detection score needs: the one definition.

Stored maps (`locally_active.run_detection`) and streamed maps (`ss_jax.stylespace.gradmaps.stream`)
are reduced by the same `accumulate`, so both paths give the same sums. For image i
(category map on the P x P grid, Q = P * P cells), considered channel c (its map
m_ic >= 0, (P, P)) and category k present in image i:

  official (StyleSpace, `locally_active`):
    n_ick        = |top-area_k cells of m_ic ∩ k|, area_ik = cells of k
    score_ick    = n_ick / area_ik ** d,  win_ic = argmax_k score_ick (none if all 0)
  gradient mass:
    mass_in_ick  = sum of m_ic over the cells of k
    mass_ic      = sum of m_ic over all cells
    share_ick    = mass_in_ick / mass_ic   (0 when the map is all zero)
    area share   = area_ik / Q             (a uniform map's share: the baseline)

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

All float sums are float64; shards are added in shard order (`a + b`), so a rerun
gives bit-identical totals. Derived per-channel quantities: `fractions()` (the
official win fraction, what `locally_active.select` thresholds), `mean_mass_share()`,
`pooled_mass_share()` (sum of mass inside / sum of mass), `mean_area_share()` and
`mass_share_std()`.
"""

import dataclasses
from typing import Optional

import numpy as np

from ss_jax.stylespace import locally_active

OFFICIAL_KEYS = ("wins", "present", "score_sum", "coverage_sum", "num_images")
MASS_KEYS = ("mass_share_sum", "mass_share_sq_sum", "mass_inside_sum", "mass_total_sum", "area_share_sum")


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

  def official(self):
    """The StyleSpace sums as `locally_active.LocalStats`."""
    return locally_active.LocalStats(self.wins, self.present, self.score_sum, self.coverage_sum, self.num_images)

  def fractions(self):
    """(C, K) official win fraction: wins / images containing k."""
    return _div(self.wins, self.present)

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
      raise ValueError("these statistics hold no map sums (stored-maps path: use locally_active.mean_maps)")
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
  per = chunk_size or max(1, locally_active._CHUNK_ELEMENTS // max(1, c * p * p))
  total = DetectionStats.zeros(c, k, p if with_map_sum else None)
  for i in range(0, n_img, per):
    m = np.asarray(maps[i : i + per], np.float32)
    cat = np.asarray(cats[i : i + per])
    off = locally_active.accumulate(m, cat, k, discount, chunk_size=len(m))
    flat = m.reshape(len(m), c, p * p).astype(np.float64)
    lab = cat.reshape(len(m), p * p).astype(np.int64)
    onehot = (lab[..., None] == np.arange(k)).astype(np.float64)  # (B, Q, K)
    present = onehot.sum(1) > 0  # (B, K)
    inside = np.matmul(flat, onehot)  # (B, C, K)
    mass = flat.sum(-1)  # (B, C)
    share = _div(inside, mass[..., None])
    pm = present[:, None, :]
    total = total + DetectionStats(
      off.num_images,
      off.present,
      off.wins,
      off.score_sum,
      off.coverage_sum,
      np.where(pm, share, 0.0).sum(0),
      np.where(pm, share**2, 0.0).sum(0),
      np.where(pm, inside, 0.0).sum(0),
      np.where(pm, mass[..., None], 0.0).sum(0),
      (onehot.sum(1) / (p * p)).sum(0),
      flat.reshape(len(m), c, p, p).sum(0) if with_map_sum else None,
    )
  return total


def load_shards(job):
  """Sum of a detection job's shards in shard order (`locally_active.run_detection` output)."""
  total = None
  for i in range(job.num_shards):
    st = DetectionStats.from_arrays(job.read(i))
    total = st if total is None else total + st
  return total
