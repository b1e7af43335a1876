"""Attribute-specific channels: which S channels consistently deviate across exemplars.

Following the official MAdvance.S2N (Wu et al. 2021, §3.3 of the procedure notes):

  z_mc    = (s_mc - mu_c) / sigma_c          per exemplar m, population mean/std
  theta_c = |mean_m z_mc| / std_m z_mc       std with ddof=0

Channels are ranked by theta, descending; toRGB channels are dropped by default
(as RemovePG does) and the candidates can be restricted to a given set (e.g. the
locally-active channels of a region). Channels with sigma_c = 0 get z = 0 (a
constant channel cannot carry an attribute); theta is 0 for 0/0 and inf when all
exemplars agree exactly on a non-zero z.

Exemplar styles come from seeds or W/W+ codes (stats.styles_from_seeds,
styles_from_codes) or from a bank ranked by an attribute-logit function
(select_exemplars).
"""

import json
import pathlib

import numpy as np

from ss_jax.runtime import jobs
from ss_jax.runtime.seeds import parse_seeds
from ss_jax.stylespace import stats as stats_lib

from ss_jax.stylegan2 import sampling as sampling_lib
from ss_jax.stylespace import channels as stylespace

_MAX_CHUNK_ELEMS = 1 << 24  # draws x exemplars x channels held at once by resampling_curve
_COLOURS = ((200, 30, 30), (30, 90, 200), (30, 150, 60), (150, 60, 160))


# ---------------------------------------------------------------- relevance


def _check_exemplars(styles, mean, std, layout):
  styles = np.asarray(styles)
  if styles.ndim != 2:
    raise ValueError(f"exemplar styles must be flat S of shape (M, C), got {styles.shape}")
  if len(styles) == 0:
    raise ValueError("empty exemplar set")
  if len(styles) < 2:
    raise ValueError("need at least 2 exemplars: the std over exemplars is undefined for one")
  c = stylespace.num_channels(layout)
  if styles.shape[1] != c:
    raise ValueError(f"exemplar styles have {styles.shape[1]} channels but this model has {c}")
  stats_lib.check(mean, std, layout)
  return styles


def normalized_differences(styles, mean, std):
  """(M, C) styles, (C,) population mean/std -> z (M, C) float64; 0 where std == 0."""
  std = np.asarray(std, np.float64)
  safe = np.where(std > 0, std, 1.0)
  z = (np.asarray(styles, np.float64) - np.asarray(mean, np.float64)) / safe
  return np.where(std > 0, z, 0.0)


def _theta(zs):
  """zs (R, k, C) -> theta (R, C) over axis 1: |mean| / std (ddof=0), 0/0 -> 0, x/0 -> inf."""
  m = np.abs(zs.mean(axis=1))
  sd = zs.std(axis=1)
  with np.errstate(divide="ignore", invalid="ignore"):
    t = m / sd
  return np.where(sd > 0, t, np.where(m > 0, np.inf, 0.0))


def relevance(z):
  """z (M, C) -> theta (C,) float64."""
  return _theta(np.asarray(z, np.float64)[None])[0]


def candidate_mask(layout, include_torgb=False, restrict_to=None):
  """(C,) bool: channels eligible for ranking (conv [+ toRGB], optionally within restrict_to).

  restrict_to: flat indices or 'L_C' names (a comma string or a list).
  """
  mask = stylespace.kind_mask(layout, include_torgb).copy()
  if restrict_to is not None:
    if isinstance(restrict_to, str) or (len(restrict_to) and isinstance(list(restrict_to)[0], str)):
      idx = stylespace.parse_names(layout, restrict_to)
    else:
      idx = np.asarray(restrict_to, np.int64).ravel()
      stylespace.to_layer_channel(layout, idx)  # range check
    keep = np.zeros_like(mask)
    keep[idx] = True
    mask &= keep
    if not mask.any():
      raise ValueError(
        "no candidate channels left: the restriction set holds only toRGB channels (pass include_torgb) or is empty"
      )
  return mask


def channel_list(spec):
  """Channel names from 'L_C,L_C' or from a file (.json list of names, or names in text)."""
  path = pathlib.Path(str(spec))
  if not path.is_file():
    if path.suffix in (".json", ".txt"):
      raise FileNotFoundError(f"channel list not found: {path}")
    return [n for n in str(spec).split(",") if n.strip()]
  text = path.read_text()
  if path.suffix == ".json":
    names = json.loads(text)
    names = names.get("channels", names) if isinstance(names, dict) else names
    if not isinstance(names, list):
      raise ValueError(f"{path}: expected a JSON list of channel names (or {{'channels': [...]}})")
    return [str(n) for n in names]
  return text.replace(",", " ").split()


def rank(theta, mask):
  """Flat indices of the candidate channels, theta descending (ties: lower index first)."""
  idx = np.flatnonzero(mask)
  return idx[np.argsort(-np.asarray(theta)[idx], kind="stable")]


def find_channels(styles, mean, std, layout, include_torgb=False, restrict_to=None):
  """Rank channels for one attribute from its exemplars.

  Args:
    styles: (M, C) flat S of the exemplars, M >= 2.
    mean, std: (C,) population statistics (stats.population_stats / stats.load).
    layout: the generator's style layout.

  Returns:
    dict(theta (C,) float64 over all channels, ranking (K,) int64 flat indices,
    names [K] 'L_C', z_mean (C,) signed mean normalised difference: its sign says
    which way to edit).
  """
  styles = _check_exemplars(styles, mean, std, layout)
  z = normalized_differences(styles, mean, std)
  theta = relevance(z)
  order = rank(theta, candidate_mask(layout, include_torgb, restrict_to))
  return {
    "theta": theta,
    "ranking": order,
    "names": stylespace.names_of(layout, order),
    "z_mean": z.mean(axis=0),
    "num_exemplars": len(styles),
  }


def ranking_table(result, layout, top_k=50):
  """JSON-ready list of the top_k channels: rank, name, flat, layer name, theta, z_mean."""
  rows = []
  for r, f in enumerate(result["ranking"][:top_k]):
    layer, ch = stylespace.to_layer_channel(layout, int(f))
    t = float(result["theta"][f])
    rows.append(
      {
        "rank": r + 1,
        "name": f"{int(layer)}_{int(ch)}",
        "flat": int(f),
        "layer": layout[int(layer)].name,
        "theta": t if np.isfinite(t) else "inf",
        "z_mean": float(result["z_mean"][f]),
      }
    )
  return rows


# ---------------------------------------------------------------- resampling curve


def default_sizes(num_exemplars, max_points=20):
  """Subset sizes 2..M: all of them for small M, else a roughly geometric grid ending at M."""
  m = int(num_exemplars)
  if m < 2:
    raise ValueError("need at least 2 exemplars for a resampling curve")
  if m - 1 <= max_points:
    return list(range(2, m + 1))
  grid = np.unique(np.round(np.geomspace(2, m, max_points)).astype(int))
  return [int(k) for k in grid]


def subset_top(z, idx, mask):
  """Top channel (by theta over each row of idx) for every subset; idx (R, k) sorted exemplar indices."""
  tops = []
  step = max(1, _MAX_CHUNK_ELEMS // (idx.shape[1] * z.shape[1]))
  for i in range(0, len(idx), step):
    t = _theta(z[idx[i : i + step]])
    t[:, ~mask] = -1.0  # theta >= 0, so masked channels never win
    tops.append(np.argmax(t, axis=1))  # first maximum = lowest index, as rank() breaks ties
  return np.concatenate(tops)


def resampling_curve(
  styles, mean, std, layout, sizes=None, num_draws=100, seed=0, include_torgb=False, restrict_to=None
):
  """How often the top channel of a random k-subset of exemplars equals the full set's.

  For each k in sizes, num_draws subsets of k distinct exemplars are drawn with
  np.random.default_rng(seed) (deterministic).

  Returns:
    dict(sizes (K,) int, top (K, R) int flat index of each draw's top channel,
    agreement (K,) float fraction of draws whose top == reference,
    reference int: top channel of the full exemplar set).
  """
  styles = _check_exemplars(styles, mean, std, layout)
  m = len(styles)
  sizes = default_sizes(m) if sizes is None else [int(k) for k in sizes]
  bad = [k for k in sizes if not 2 <= k <= m]
  if not sizes or bad:
    raise ValueError(f"subset sizes must lie in 2..{m} (number of exemplars), got {bad or sizes}")
  if num_draws < 1:
    raise ValueError(f"num_draws must be >= 1, got {num_draws}")
  z = normalized_differences(styles, mean, std)
  mask = candidate_mask(layout, include_torgb, restrict_to)
  # The reference goes through the same code path as the draws, so k = M agrees exactly.
  reference = int(subset_top(z, np.arange(m)[None], mask)[0])
  rng = np.random.default_rng(seed)
  tops = []
  for k in sizes:
    idx = np.sort(np.argsort(rng.random((num_draws, m)), axis=1)[:, :k], axis=1)
    tops.append(subset_top(z, idx, mask))
  tops = np.stack(tops)
  return {
    "sizes": np.array(sizes, np.int64),
    "top": tops,
    "agreement": (tops == reference).mean(axis=1),
    "reference": reference,
  }


def plot_curve(sizes, agreement, title="", width=560, height=360, labels=None):
  """Agreement vs. number of exemplars as an (H, W, 3) uint8 line plot (PIL, default font).

  agreement: (K,) or (S, K) for S series (NaN points skipped), with optional legend labels.
  """
  from PIL import Image, ImageDraw

  img = Image.new("RGB", (width, height), "white")
  d = ImageDraw.Draw(img)
  left, right, top, bottom = 56, width - 16, 28 if title else 14, height - 40
  d.rectangle([left, top, right, bottom], outline="black")
  xs = np.asarray(sizes, np.float64)
  lo, hi = xs.min(), max(xs.max(), xs.min() + 1)
  px = lambda x: left + (x - lo) / (hi - lo) * (right - left)
  py = lambda y: bottom - y * (bottom - top)
  for y in (0.0, 0.25, 0.5, 0.75, 1.0):
    d.line([left - 4, py(y), left, py(y)], fill="black")
    d.line([left + 1, py(y), right - 1, py(y)], fill=(225, 225, 225))
    d.text((left - 34, py(y) - 6), f"{y:.2f}", fill="black")
  ticks = np.unique(np.linspace(0, len(xs) - 1, min(len(xs), 8)).round().astype(int))
  for i in ticks:
    d.line([px(xs[i]), bottom, px(xs[i]), bottom + 4], fill="black")
    d.text((px(xs[i]) - 6, bottom + 6), str(int(xs[i])), fill="black")
  series = np.atleast_2d(np.asarray(agreement, np.float64))
  for i, ys in enumerate(series):
    colour = _COLOURS[i % len(_COLOURS)]
    pts = [(px(x), py(float(a))) for x, a in zip(xs, ys) if np.isfinite(a)]
    if len(pts) > 1:
      d.line(pts, fill=colour, width=2)
    for x, y in pts:
      d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    if labels is not None:
      d.text((right - 250, bottom - 6 - 14 * (len(series) - i)), str(labels[i]), fill=colour)
  d.text(((left + right) // 2 - 60, height - 18), "number of exemplars", fill="black")
  if title:
    d.text((left, 8), title, fill="black")
  return np.asarray(img)


# ---------------------------------------------------------------- exemplar sources


def load_codes(path, cfg):
  """W or W+ codes from an .npz: key 'ws' (M, num_ws, w_dim) or 'w' (M, w_dim) -> ws float32."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"codes file not found: {path}")
  with jobs.open_npz(path) as f:
    if "ws" in f.files:
      ws = np.asarray(f["ws"], np.float32)
    elif "w" in f.files:
      w = np.asarray(f["w"], np.float32)
      if w.ndim != 2 or w.shape[1] != cfg.w_dim:
        raise ValueError(f"{path}: 'w' must have shape (M, {cfg.w_dim}), got {w.shape}")
      ws = np.repeat(w[:, None], cfg.num_ws, axis=1)
    else:
      raise ValueError(f"{path}: expected key 'w' (M, w_dim) or 'ws' (M, num_ws, w_dim), found {f.files}")
  if ws.ndim != 3 or ws.shape[1:] != (cfg.num_ws, cfg.w_dim):
    raise ValueError(f"{path}: 'ws' must have shape (M, {cfg.num_ws}, {cfg.w_dim}), got {ws.shape}")
  if len(ws) == 0:
    raise ValueError(f"{path}: empty exemplar set (no codes)")
  return ws


def styles_from_codes(g, codes, batch_size=64, mesh=None):
  """Codes (.npz path or ws array (M, num_ws, w_dim)) -> flat S (M, C) float32; used as given (no psi)."""
  ws = load_codes(codes, g.config) if isinstance(codes, (str, pathlib.Path)) else codes
  return sampling_lib.styles_from_ws(g, ws, batch_size, mesh)


def top_by_attribute(logits, attribute, k, largest=True):
  """Indices of the k rows with the largest (or smallest) logit in column `attribute`."""
  logits = np.asarray(logits)
  if logits.ndim != 2:
    raise ValueError(f"attribute logits must have shape (N, A), got {logits.shape}")
  if not (isinstance(attribute, (int, np.integer)) and 0 <= attribute < logits.shape[1]):
    raise ValueError(
      f"unknown attribute index {attribute!r}: the logits have {logits.shape[1]} attributes (0..{logits.shape[1] - 1})"
    )
  if k < 1:
    raise ValueError(f"need k >= 1 exemplars, got {k}")
  col = logits[:, attribute] if largest else -logits[:, attribute]
  return np.argsort(-col, kind="stable")[:k]


def select_exemplars(
  g, logit_fn, attribute, k, seeds, psi=0.7, largest=True, batch_size=16, class_idx=None, progress=None, mesh=None
):
  """Pick the k bank samples whose attribute logit is highest (lowest if not largest).

  Args:
    logit_fn: images (b, H, W, C) float32 in about [-1, 1] (raw generator
      output, const noise) -> (b, A) logits; called once per batch.
    attribute: column of the logits to rank by.
    seeds: the bank (same sampling convention as the population stats).

  Returns:
    dict(seeds (k,), styles (k, C) float32, logits (k,) of the chosen column).
  """
  from ss_jax.stylespace import manipulate

  seeds = np.asarray(list(seeds), np.int64)
  if len(seeds) == 0:
    raise ValueError("empty exemplar bank (no seeds)")
  styles, logits = [], []
  for s in sampling_lib.iter_styles_from_seeds(g, seeds, psi, batch_size, class_idx, mesh):
    out = np.asarray(logit_fn(manipulate.render(g, s, batch_size, as_numpy=False)))
    if out.ndim != 2 or len(out) != len(s):
      raise ValueError(f"logit_fn must return (N, A) for N={len(s)} images, got {out.shape}")
    top_by_attribute(out[:1], attribute, 1)  # fail on a bad index before rendering the whole bank
    styles.append(s)
    logits.append(out)
    if progress is not None:
      progress.update(len(s))
  logits = np.concatenate(logits)
  idx = top_by_attribute(logits, attribute, min(k, len(seeds)), largest)
  return {"seeds": seeds[idx], "styles": np.concatenate(styles)[idx], "logits": logits[idx, attribute]}


def to_json(result, layout, top_k=50, **meta):
  """Plain dict of a ranking (top_k rows) plus meta, for jobs.atomic_write_json."""
  return {"num_exemplars": int(result["num_exemplars"]), "top": ranking_table(result, layout, top_k), **meta}


def curve_to_json(curve, layout, **meta):
  """Plain dict of a resampling curve, channels as 'L_C' names."""
  names = np.array(stylespace.names_of(layout, curve["top"].ravel())).reshape(curve["top"].shape)
  return {
    "sizes": curve["sizes"].tolist(),
    "agreement": curve["agreement"].tolist(),
    "reference": stylespace.name_of(layout, curve["reference"]),
    "top": names.tolist(),
    **meta,
  }


def exemplar_mode(
  g,
  out,
  stats_path,
  seeds=None,
  codes=None,
  psi=0.7,
  include_torgb=False,
  restrict=None,
  top_k=50,
  draws=100,
  curve_seed=0,
  batch_size=64,
):
  """Ranking of given exemplars (seeds or W/W+ codes) and their self-resampling curve, written to out.

  Writes ranking.json, attribute_channels.npz, resampling_curve.json and .png. The curve
  compares k-subsets with the full exemplar set itself: a stability check whose last point
  is 1 by construction, not a detection accuracy (see ss_jax.stylespace.attribute_detection for that).
  """
  from ss_jax.runtime import images

  if stats_path is None:
    raise ValueError("exemplar mode (--seeds / --codes) needs --stats")
  st = stats_lib.load(stats_path, g.layout)
  if codes:
    s, meta = styles_from_codes(g, codes, batch_size), {"codes": str(codes)}
  else:
    seeds = np.array(parse_seeds(seeds))
    print(f"computing styles of {len(seeds)} exemplars (psi={psi})")
    s, meta = sampling_lib.styles_from_seeds(g, seeds, psi, batch_size), {"seeds": seeds.tolist(), "psi": psi}
  result = find_channels(s, st["mean"], st["std"], g.layout, include_torgb, restrict)
  print(
    f"{len(s)} exemplars; top channels: "
    + ", ".join(f"{n} ({result['theta'][f]:.2f})" for n, f in zip(result["names"][:5], result["ranking"][:5]))
  )
  sizes = default_sizes(len(s))
  print(f"resampling curve (stability, not accuracy): {draws} draws x {len(sizes)} subset sizes")
  curve = resampling_curve(s, st["mean"], st["std"], g.layout, sizes, draws, curve_seed, include_torgb, restrict)
  meta.update(stats=str(stats_path), include_torgb=include_torgb, restrict_to=restrict)
  out = pathlib.Path(out)
  jobs.atomic_write_json(out / "ranking.json", to_json(result, g.layout, top_k, **meta))
  jobs.atomic_save_npz(
    out / "attribute_channels.npz", theta=result["theta"], ranking=result["ranking"], z_mean=result["z_mean"], styles=s
  )
  curve_json = curve_to_json(
    curve,
    g.layout,
    draws=draws,
    seed=curve_seed,
    note="subsets vs their own exemplars: stability, 1.0 at k = M by construction",
  )
  jobs.atomic_write_json(out / "resampling_curve.json", curve_json)
  title = f"stability: share of k-exemplar draws whose top channel is {curve_json['reference']}"
  images.save_png(out / "resampling_curve.png", plot_curve(curve["sizes"], curve["agreement"], title))
  print(f"wrote ranking.json, attribute_channels.npz, resampling_curve.json/.png to {out}")
