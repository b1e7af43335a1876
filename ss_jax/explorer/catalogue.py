"""The explorer's channel catalogue: channels by category and layer, verified ones first.

Sources, in order of precedence (a workdir is searched for the files by name):
  stats.npz        population std (sigma of every channel; experiments.style_stats)
  detections.json  locally-active channels per category (experiments.detect_local), with
                   mean_maps.npz next to it (mean gradient maps of the detected channels)
  verified.json    {"categories": [{"category": "hair", "verified": [{"name": "6_113",
                   ...measures}]}]}: channels whose edits were verified; listed first

Without a workdir (or without some of the files) the missing parts are computed on the fly:
sigma from `population_sigma` (a few thousand samples), and, where a segmenter is known for
the generator, a quick locally-active detection on a few images (`measure_locality`, the
same rule as ss_jax.stylespace.locally_active with its default thresholds). Every entry says where its
numbers come from.

Catalogue dict (served to the page as JSON):
  {"source": str, "notes": [str], "categories": [str], "layers": [{index, name, resolution,
   kind, channels, offset}], "entries": [{"name", "flat", "layer", "category", "verified",
   "detected", "measures": {str: number}}]}
"""

import json
import pathlib

import numpy as np

from ss_jax.runtime import jobs
from ss_jax.stylespace import detection_stats, locally_active, segmentation, stats, channels as stylespace

ON_THE_FLY_SAMPLES = 2000
ON_THE_FLY_PSI = 0.7
LOCALITY_SEEDS = tuple(range(16))
_MEASURE_KEYS_SHOWN = 8


def find_file(workdir, name):
  """The first (sorted) WORKDIR/**/name at most 3 levels deep, or None."""
  if workdir is None:
    return None
  root = pathlib.Path(workdir)
  if not root.is_dir():
    raise FileNotFoundError(f"workdir not found: {root}")
  for depth in range(4):
    hits = sorted(root.glob("/".join(["*"] * depth + [name])))
    if hits:
      return hits[0]
  return None


def population_sigma(g, num_samples=ON_THE_FLY_SAMPLES, psi=ON_THE_FLY_PSI):
  """(C,) float64 population std of flat S over seeds 0..num_samples-1 (ss_jax.stylespace.stats conventions)."""
  return stats.population_stats(g, num_samples, psi=psi, batch_size=256)["std"]


def layers_of(layout):
  return [
    {
      "index": L.index,
      "name": L.name,
      "resolution": L.resolution,
      "kind": L.kind,
      "channels": L.channels,
      "offset": L.offset,
    }
    for L in layout
  ]


def _measures(d, skip=("name", "flat", "layer", "layer_name", "resolution", "position", "channel")):
  out = {}
  for k, v in d.items():
    if k in skip or isinstance(v, bool) or not isinstance(v, (int, float)):
      continue
    out[k] = round(float(v), 4)
    if len(out) >= _MEASURE_KEYS_SHOWN:
      break
  return out


def from_results(layout, detections=None, verified=None):
  """Entries from parsed detections.json / verified.json dicts (either may be None); -> (categories, entries)."""
  cats, entries = [], {}

  def add(cat, e, verified_flag):
    flat = stylespace.parse_name(layout, e["name"])
    key = (e["name"], cat)
    layer = int(stylespace.to_layer_channel(layout, flat)[0])
    cur = entries.setdefault(
      key,
      {
        "name": e["name"],
        "flat": int(flat),
        "layer": layer,
        "category": cat,
        "verified": False,
        "detected": False,
        "measures": {},
      },
    )
    cur["verified"] |= verified_flag
    cur["detected"] |= not verified_flag
    m = _measures(e)
    cur["measures"].update({("verified " if verified_flag else "") + k: v for k, v in m.items()})

  for src, key, flag in ((verified, "verified", True), (detections, "detected", False)):
    if src is None:
      continue
    if not isinstance(src, dict) or not isinstance(src.get("categories"), list):
      raise ValueError(f"{key} results: expected {{'categories': [...]}}")
    for c in src["categories"]:
      name = str(c.get("category", "?"))
      if name not in cats:
        cats.append(name)
      for e in c.get(key, []):
        add(name, e, flag)
  order = lambda e: (
    not e["verified"],
    not e["detected"],
    cats.index(e["category"]),
    -max([v for k, v in e["measures"].items() if "fraction" in k] or [0]),
    e["flat"],
  )
  return cats, sorted(entries.values(), key=order)


def load_workdir(layout, workdir=None, stats_path=None, detections_path=None, verified_path=None):
  """Reads what exists -> dict(std or None, sigma_source, categories, entries, mean_maps {name: (P, P)}, notes)."""
  notes = []
  stats_path = stats_path or find_file(workdir, "stats.npz")
  detections_path = detections_path or find_file(workdir, "detections.json")
  verified_path = verified_path or find_file(workdir, "verified.json")
  out = {"std": None, "sigma_source": "", "mean_maps": {}, "notes": notes}
  if stats_path:
    st = stats.load(stats_path, layout)
    out["std"], out["sigma_source"] = st["std"], f"{stats_path} ({st['count']} samples)"
  read = lambda p: json.loads(pathlib.Path(p).read_text()) if p else None
  det, ver = read(detections_path), read(verified_path)
  out["categories"], out["entries"] = from_results(layout, det, ver)
  for p, what in ((detections_path, "detections"), (verified_path, "verified channels")):
    notes.append(f"{what}: {p}" if p else f"no {what} file")
  if detections_path:
    mm_path = pathlib.Path(detections_path).parent / "mean_maps.npz"
    if mm_path.is_file():
      mm = jobs.load_npz(mm_path)
      out["mean_maps"] = dict(zip(stylespace.names_of(layout, mm["channels"]), mm["maps"]))
  return out


def measure_locality(
  g, segmenter, table, seeds=LOCALITY_SEEDS, psi=ON_THE_FLY_PSI, resolution=32, threshold=0.5, margin=0.25
):
  """Quick locally-active detection on a few seeds -> (categories, entries, mean maps {name: (P, P)}).

  Same maps, category reduction and decision rule as experiments.detect_local; with 16
  images the fractions are coarse (steps of 1/16), so these are candidates, not verified.
  """
  from ss_jax.stylespace.gradmaps import api as gradmaps  # heavy import, only needed here
  from ss_jax.explorer import renderer

  layout = g.layout
  flat = renderer.seed_styles(g, seeds, psi)
  imgs = renderer.render_rows(g, flat)
  maps = np.asarray(gradmaps.gradient_maps(g, flat, resolution=resolution))  # (N, Cc, P, P)
  p = maps.shape[-1]
  cats = segmentation.reduce_labels(table.merge(segmentation.segment(segmenter, imgs)), p, table.num_categories)
  st = detection_stats.accumulate(maps, cats, table.num_categories)
  frac, cover = st.fractions(), st.mean_coverage()
  considered = stylespace.considered_indices(layout)
  det = {"categories": []}
  mean = {}
  for k, cname in enumerate(table.categories):
    pos, top, second = locally_active.select(frac, k, threshold, margin)
    det["categories"].append(
      {
        "category": cname,
        "detected": [
          {
            "name": stylespace.name_of(layout, considered[q]),
            "fraction": float(top[q]),
            "margin": float(top[q] - second[q]),
            "mean_coverage": float(cover[q, k]),
            "images": len(seeds),
          }
          for q in pos
        ],
      }
    )
    for q in pos:
      mean[stylespace.name_of(layout, considered[q])] = maps[:, q].mean(0)
  cat_names, entries = from_results(layout, det)
  return cat_names, entries, mean
