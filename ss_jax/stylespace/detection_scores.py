"""Detection rules for locally-active channels: the paper's win fraction and the gradient-mass score.

* `official` (StyleSpace Sec. 4.1, `locally_active.select`): channel c wins category k in an
  image when its top-area overlap n / area**2 is the largest; c is detected for k when it wins
  k in more than `threshold` (0.5) of the images containing k, with a `margin` (0.25) over
  every other category. The discount rewards small, high-contrast regions: on ToyFaces an
  average channel wins "eye" in about a third of the images (see docs/verification.md).
* `mass`: the share of c's gradient-map mass that falls inside k,
      mass[c, k] = mean over images containing k of  sum_{cells in k} map_c / sum_cells map_c,
  an estimate of the share of the (linearised) pixel change inside k, compared with what an
  area-proportional (non-local) channel would put there, the mean area share a_k of k:
      excess[c, k] = (mass[c, k] - a_k) / (1 - a_k)       (0: no better than area, 1: all inside)
  c is detected for k when excess[c, k] >= `mass_threshold` (0.15). The normalisation makes one
  threshold usable for the background (a_k ~ 0.5) and the eyes (a_k ~ 0.01); a channel may pass
  for several categories.
* `union`: official or mass. The two find different channels (the official rule the small
  parts, the mass rule the large ones); verification by editing supplies the precision.

Thresholds and the default were chosen against the edit-based ground truth of the shipped ToyFaces
model (`benchmarks.bench_verification`, docs/verification/README.md), not on a held-out model.

Mass statistics are sums over images (`MassStats`), computed from the stored gradient maps and
the category maps of a detection job's shards (no new segmentation), so they can be computed for
detection jobs made before this rule existed.
"""
import dataclasses

import numpy as np

from ss_jax.runtime import jobs

SCORES = ("official", "mass", "union")
DEFAULT_SCORE = "union"
DEFAULT_MASS_THRESHOLD = 0.15
MASS_FILE = "mass.npz"


def mass_shares(maps, cats, num_categories):
  """Share of each map's mass inside each category.

  Args:
    maps: (B, C, P, P) non-negative gradient maps; cats: (B, P, P) int category ids.
  Returns:
    (B, C, K) float64 shares (rows sum to 1; all 0 for a zero map) and (B, K) float64 area shares.
  """
  maps = np.asarray(maps, np.float64)
  b, c = maps.shape[:2]
  m = maps.reshape(b, c, -1)
  cats = np.asarray(cats).reshape(b, -1).astype(np.int64)
  onehot = (cats[..., None] == np.arange(num_categories)).astype(np.float64)   # (B, Q, K)
  inside = np.matmul(m, onehot)                                                  # (B, C, K)
  total = m.sum(-1, keepdims=True)
  share = np.divide(inside, total, out=np.zeros_like(inside), where=total > 0)
  return share, onehot.mean(1)


@dataclasses.dataclass
class MassStats:
  """Sums over images: mass_sum (C, K) of mass shares and area_sum (K,) of area shares, both over
  images containing k; present (K,) images containing k."""
  mass_sum: np.ndarray
  area_sum: np.ndarray
  present: np.ndarray

  def __add__(self, o):
    return MassStats(self.mass_sum + o.mass_sum, self.area_sum + o.area_sum, self.present + o.present)

  def mean_mass(self):
    return np.divide(self.mass_sum, self.present, out=np.zeros(self.mass_sum.shape), where=self.present > 0)

  def mean_area(self):
    return np.divide(self.area_sum, self.present, out=np.zeros(self.area_sum.shape), where=self.present > 0)


def accumulate_mass(maps, cats, num_categories, chunk_size=16):
  """(N, C, P, P) maps, (N, P, P) category ids -> MassStats (images in chunks of chunk_size)."""
  total = None
  for i in range(0, len(maps), chunk_size):
    share, area = mass_shares(maps[i:i + chunk_size], cats[i:i + chunk_size], num_categories)
    present = area > 0
    st = MassStats((share * present[:, None]).sum(0), (area * present).sum(0), present.sum(0).astype(np.int64))
    total = st if total is None else total + st
  return total


def mass_stats(job, gm):
  """MassStats of a detection job (its category maps) over its gradient maps; cached in job.dir/mass.npz."""
  from ss_jax.stylespace.gradmaps import storage
  path = job.dir / MASS_FILE
  key = np.array([job.num_shards, gm.num_shards])
  if path.is_file():
    d = jobs.load_npz(path)
    if np.array_equal(d["key"], key):
      return MassStats(d["mass_sum"], d["area_sum"], d["present"])
  k = len(job.spec["table"]["categories"])
  total = None
  for i in range(job.num_shards):
    st = accumulate_mass(storage.read_gradient_maps(gm, i)["maps"], job.read(i)["cats"], k)
    total = st if total is None else total + st
  jobs.atomic_save_npz(path, key=key, mass_sum=total.mass_sum, area_sum=total.area_sum, present=total.present)
  return total


def mass_excess(mass, area):
  """(C, K) mean mass shares, (K,) mean area shares -> (C, K) (mass - area) / (1 - area)."""
  area = np.asarray(area, np.float64)[None]
  return (np.asarray(mass, np.float64) - area) / np.maximum(1 - area, 1e-9)


def select_mass(mass, area, target, mass_threshold=DEFAULT_MASS_THRESHOLD):
  """Channels detected for `target` by the mass rule.

  Args:
    mass: (C, K) mean mass shares; area: (K,) mean area shares.
  Returns:
    (positions (M,) sorted by excess descending, excess[:, target] (C,)).
  """
  ex = mass_excess(mass, area)[:, target]
  pos = np.flatnonzero(ex >= mass_threshold)
  return pos[np.argsort(-ex[pos], kind="stable")], ex


def detect(score, frac=None, mass=None, area=None, threshold=0.5, margin=0.25,
           mass_threshold=DEFAULT_MASS_THRESHOLD):
  """{category id: ranked (M,) positions} under rule `score` (official: frac; mass: mass + area; union: all).

  union ranks the official detections first, then the mass rule's other channels.
  """
  from ss_jax.stylespace import locally_active
  if score not in SCORES:
    raise ValueError(f"unknown score {score!r}; known: {', '.join(SCORES)}")
  out = {}
  k_all = (frac if frac is not None else mass).shape[1]
  for k in range(k_all):
    off = locally_active.select(frac, k, threshold, margin)[0] if score != "mass" else np.zeros(0, np.int64)
    ms = select_mass(mass, area, k, mass_threshold)[0] if score != "official" else np.zeros(0, np.int64)
    out[k] = np.concatenate([off, ms[~np.isin(ms, off)]]).astype(np.int64)
  return out


def precision_recall(claimed, truth):
  """(C,) bool claimed, (C,) bool truth -> (precision, recall, F1, #claimed, #true); NaN where undefined."""
  claimed, truth = np.asarray(claimed, bool), np.asarray(truth, bool)
  tp = int((claimed & truth).sum())
  p = tp / claimed.sum() if claimed.sum() else float("nan")
  r = tp / truth.sum() if truth.sum() else float("nan")
  f1 = 2 * p * r / (p + r) if claimed.sum() and truth.sum() and (p + r) > 0 else (
      0.0 if claimed.sum() and truth.sum() else float("nan"))
  return p, r, f1, int(claimed.sum()), int(truth.sum())
