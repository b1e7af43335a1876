"""DCI of Z, W, W+ and S: resumable sampling of codes and attribute logits, evaluation, outputs.

Sampling (StyleSpace protocol, `GetCode.py --no_truncation`):
  * Sample i has seed `seed + i` and z = sampling.z_from_seeds (RandomState(seed + i).randn),
    as in `ss_jax.stats`, so a sample can be re-rendered with `experiments.generate`.
  * psi = 1 by default (no truncation, as the paper's DCI run); another psi is applied to
    every w row. Conditional models: class label (seed + i) % c_dim, as in `ss_jax.stats`.
  * Images are rendered with the checkpoint's constant noise (noise_mode='const').
  * Two ShardedJobs under the workdir, cut into the same chunks of samples:
      dci_codes/   z (n, z_dim), w (n, w_dim), s (n, C) float32 -- all style channels in
                   generator order, toRGB included (the official `S_Flat` input).
      dci_logits/  logits (n, A) float32 of an attribute function on the rendered images.
    Codes do not depend on the attribute function, so one set of codes serves any number
    of classifiers or precomputed logits files; each job refuses to resume with other
    settings (model fingerprint, seeds, psi, shard size; classifier id for the logits).
  * W+ is not stored: a random sample's W+ code is its w broadcast to all num_ws rows
    (that is how the official code forms W+ for random samples), so storing it would
    only multiply the disk footprint by num_ws. `space_codes` broadcasts it at analysis
    time. By design of the protocol, DCI on W+ therefore sees num_ws identical copies of
    every w dimension: D can only repeat W's per-code spread, while C is diluted over the
    copies (lasso splits the weight evenly among identical columns, GBT picks copies
    arbitrarily). It is reported because the issue asks for it, not as a new finding.

Batches are padded to a multiple of the device count and sharded over a 1-D 'data' mesh
(params replicated), with the helpers of `ss_jax.stats`. With several processes
(`ss_jax.distributed`) each process samples its own shards (round-robin) in lock-step rounds
over the global mesh; process 0 evaluates once every shard exists.

Evaluation: `ss_jax.dci.dci` per space on the stored codes; `write_outputs` writes
dci.json, dci.md (the `dci.format_table` markdown), importance.npz and heat maps.
"""
import dataclasses
import functools
import hashlib
import json
import pathlib
import time
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ss_jax import dci as dci_lib
from ss_jax import dci_controls
from ss_jax import images as images_lib
from ss_jax import distributed, jobs, report, sampling, stats, stylespace
from ss_jax.generator import flatten_styles, unflatten_styles

CODES_JOB = "dci_codes"
LOGITS_JOB = "dci_logits"
DEFAULT_SAMPLES_PER_SHARD = 5_000  # 5k x 9,088 float32 S = 180 MB per shard at 1024 px
# Flag name -> display name (the keys of `dci.format_table`); controls: see ss_jax/dci_controls.py.
SPACES = {"z": "Z", "w": "W", "wplus": "W+", "s": "S", **dci_controls.SPACES}
MAX_FULL_CODES = 512  # heat maps draw every code up to this many, else groups + top-k
TOP_K_CODES = 64

# The sharded batching of ss_jax.stats (pad to the device count, params replicated, batch
# over 'data', one compiled shape) and its seed -> class-label rule, shared rather than copied.


# ----------------------------------------------------------------------------- attribute functions


@dataclasses.dataclass(frozen=True, eq=False)
class AttributeFunction:
  """images (B, H, W, C) float32 in [-1, 1] -> logits (B, A); logit > 0 = attribute present.

  Attributes:
    fn: the function.
    names: (A,) attribute names, or None (then 'attr_k').
    id: identifies the function in the logits job's settings, so a resume with another
      classifier is refused (e.g. name + parameter hash).
    traceable: fn is a pure JAX function; it then runs inside the sharded jitted step
      (images never leave the devices). Otherwise it is called on the host with numpy.
  """
  fn: Callable
  names: Sequence[str] | None
  id: str
  traceable: bool = False


def _tree_fingerprint(tree) -> str:
  h = hashlib.sha1()
  for leaf in jax.tree.leaves(tree):
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return h.hexdigest()


def toyfaces_attribute_function(directory=None) -> AttributeFunction:
  """The ToyFaces attribute classifier (default: the shipped one) as a traceable function."""
  from ss_jax.toyfaces import models  # lazy: the classifier is only needed for ToyFaces runs
  clf = models.load_classifier(directory)

  def fn(images):
    return models.classifier_outputs(clf.config, clf.params, images)[0]

  return AttributeFunction(fn, tuple(clf.attribute_names),
                           f"toyfaces_classifier:{_tree_fingerprint(clf.params)[:16]}", traceable=True)


# ----------------------------------------------------------------------------- sharded steps


@functools.lru_cache(maxsize=None)
def _codes_step(psi: float):
  """(g, z, c) -> (B, w_dim + C) = [w | flat S]; psi is static so that psi = 1 is exact."""

  def step(g, z, c):
    ws = g.mapping(z, c, psi)  # psi == 1.0: plain broadcast, no lerp round-off
    return jnp.concatenate([ws[:, 0], flatten_styles(g.styles(ws))], axis=1)

  return step


def _images_step(g, s):
  """(g, flat S (B, C)) -> images flattened to (B, H*W*C) (one sharded output array)."""
  x = g.synthesis(unflatten_styles(g.layout, s), noise_mode="const")
  return x.reshape(x.shape[0], -1)


@functools.lru_cache(maxsize=None)
def _logits_step(attribute_fn: AttributeFunction):
  """(g, flat S) -> logits (B, A): synthesis and a traceable classifier in one program."""

  def step(g, s):
    x = g.synthesis(unflatten_styles(g.layout, s), noise_mode="const")
    return jnp.asarray(attribute_fn.fn(x), jnp.float32)

  return step


def sample_codes(g, seeds, psi=1.0, batch_size=256, class_idx=None, mesh=None, progress=None):
  """Seeds (n,) -> dict(z (n, z_dim), w (n, w_dim), s (n, C)), float32 numpy.

  seeds: this process's seeds (may be empty in a multi-process round, see
  distributed.map_batches: every process must call this in lock-step).
  """
  seeds = np.asarray(list(seeds), np.int64)
  cfg = g.config
  z = sampling.z_from_seeds(seeds, cfg.z_dim) if len(seeds) else np.zeros((0, cfg.z_dim), np.float32)
  prepare = stats.seed_inputs(cfg.z_dim, cfg.c_dim, class_idx)
  parts = [np.zeros((0, cfg.w_dim + g.num_style_channels), np.float32)]
  for out in stats.sharded_batches(_codes_step(float(psi)), g, (seeds,), (), batch_size, mesh, prepare):
    parts.append(out)
    if progress is not None and len(out):
      progress.update(len(out))
  ws = np.concatenate(parts)
  return {"z": z, "w": ws[:, :cfg.w_dim], "s": ws[:, cfg.w_dim:]}


def attribute_logits(g, s, attribute_fn: AttributeFunction, batch_size=256, mesh=None, progress=None):
  """Flat S (n, C) -> logits (n, A) float32 of attribute_fn on the rendered images (n may be 0)."""
  cfg = g.config
  res, ch = cfg.img_resolution, cfg.img_channels
  parts = []
  if attribute_fn.traceable:
    batches = stats.sharded_batches(_logits_step(attribute_fn), g, (s,), (), batch_size, mesh)
  else:
    batches = (np.asarray(attribute_fn.fn(x.reshape(len(x), res, res, ch)), np.float32) if len(x) else None
               for x in stats.sharded_batches(_images_step, g, (s,), (), batch_size, mesh))
  for out in batches:
    if out is None or len(out) == 0:  # no rows of this process in the step
      continue
    if out.ndim != 2 or (parts and out.shape[1] != parts[0].shape[1]):
      raise ValueError(f"attribute function must return (B, A) logits, got shape {out.shape}")
    parts.append(out)
    if progress is not None:
      progress.update(len(out))
  return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


# ----------------------------------------------------------------------------- resumable sampling


@dataclasses.dataclass
class SamplingJobs:
  """The codes job and (None when logits come from a file) the logits job of one run."""
  codes: jobs.ShardedJob
  logits: jobs.ShardedJob | None
  ranges: list

  def done(self, i) -> bool:
    return self.codes.done(i) and (self.logits is None or self.logits.done(i))

  def complete(self) -> bool:
    return all(self.done(i) for i in range(len(self.ranges)))

  def done_samples(self) -> int:
    return sum(b - a for i, (a, b) in enumerate(self.ranges) if self.done(i))


def make_jobs(workdir, g, num_samples, attribute_fn: AttributeFunction | None = None, *, seed=0,
              psi=1.0, samples_per_shard=DEFAULT_SAMPLES_PER_SHARD, class_idx=None,
              extra_spec=None) -> SamplingJobs:
  """The ShardedJobs under workdir for these settings.

  Raises:
    jobs.SettingsMismatch: workdir holds a run with other settings, another model, or
      (for the logits) another attribute function.
  """
  ranges = stats.shard_ranges(num_samples, samples_per_shard)
  spec = {"num_samples": int(num_samples), "seed": int(seed), "psi": float(psi),
          "samples_per_shard": int(samples_per_shard), "class_idx": class_idx,
          "z": "z_from_seeds(seed + i)", "noise_mode": "const", "model": stats.model_fingerprint(g),
          **(extra_spec or {})}
  codes = jobs.ShardedJob(workdir, CODES_JOB, spec, len(ranges))
  logits = None
  if attribute_fn is not None:
    logits = jobs.ShardedJob(workdir, LOGITS_JOB, dict(spec, attribute_fn=attribute_fn.id), len(ranges))
  return SamplingJobs(codes, logits, ranges)


def run_sampling(g, sjobs: SamplingJobs, attribute_fn: AttributeFunction | None = None, *,
                 batch_size=256, mesh=None, progress=None, max_shards=None) -> int:
  """Computes this process's missing shards of both jobs; returns the number of samples computed.

  Shards are split between processes round-robin (ShardedJob.mine()); all processes
  step through the rounds in lock-step on the global mesh (ss_jax.distributed), so
  every process must call this. Call `distributed.wait_for_shards(sjobs.codes, ...)`
  before reading other processes' shards.

  Args:
    g: the Generator the jobs were made for.
    sjobs: from make_jobs (with the same attribute_fn); seed, psi and class_idx are read
      from its settings, so a resume cannot mix them.
    batch_size: samples per step per process (padded to its devices on the mesh).
    mesh: 1-D mesh 'data' (default: every device of every process).
    progress: optional object with update(n), called with samples per batch.
    max_shards: stop after this many shards per process (None: all). A later call continues.

  Returns:
    Samples whose shard was (fully or partly) computed by this call on this process.
  """
  if (attribute_fn is None) != (sjobs.logits is None):
    raise ValueError("attribute_fn must be given exactly when the jobs were made with one")
  spec = sjobs.codes.spec
  psi, seed, class_idx = spec["psi"], spec["seed"], spec["class_idx"]
  mesh = distributed.auto_axes(mesh or stats.default_mesh())
  g = distributed.replicate(g, mesh)
  pending = [i for i in sjobs.codes.mine() if not sjobs.done(i)]
  if max_shards is not None:
    pending = pending[:max(int(max_shards), 0)]
  computed = 0
  for i in distributed.schedule(pending, mesh):
    a, b = sjobs.ranges[i] if i is not None else (0, 0)  # None: no rows here this round
    need_codes = i is not None and not sjobs.codes.done(i)
    need_logits = i is not None and sjobs.logits is not None and not sjobs.logits.done(i)
    codes = sample_codes(g, range(seed + a, seed + b) if need_codes else [], psi, batch_size, class_idx,
                         mesh, None if need_logits else progress)
    if need_codes:
      sjobs.codes.write(i, **codes)
    if sjobs.logits is not None:  # every process steps through it, with rows or without
      s = np.zeros((0, g.num_style_channels), np.float32)
      if need_logits:
        s = codes["s"] if need_codes else sjobs.codes.read(i)["s"]
      logits = attribute_logits(g, s, attribute_fn, batch_size, mesh, progress)
      if need_logits:
        sjobs.logits.write(i, logits=logits)
    if i is not None:
      computed += b - a
  return computed


def read_array(job: jobs.ShardedJob, key: str) -> np.ndarray:
  """One array of every shard, concatenated into one preallocated (N, ...) array.

  Reads shard by shard and only `key`, so peak memory is the result plus one shard's array.
  """
  missing = [i for i in range(job.num_shards) if not job.done(i)]
  if missing:
    raise RuntimeError(f"{job.dir}: {len(missing)} shard(s) not done yet (first: {missing[0]})")
  out, pos = None, 0
  for i in range(job.num_shards):
    with jobs.open_npz(job.shard_path(i)) as f:
      x = f[key]
    if out is None:
      out = np.empty((job.spec["num_samples"],) + x.shape[1:], x.dtype)
    out[pos:pos + len(x)] = x
    pos += len(x)
  if pos != len(out):
    raise ValueError(f"{job.dir}: shards hold {pos} rows, the job expects {len(out)}")
  return out


def space_codes(codes_job: jobs.ShardedJob, space: str, num_ws: int, layout=None,
                control_seed=0) -> np.ndarray:
  """Codes (N, D) float32 of one space (a key of SPACES) from a finished codes job.

  'wplus' broadcasts the stored w to every row: (N, num_ws * w_dim), row-major (row r,
  dim d -> column r * w_dim + d). It is materialised because the DCI fits need rows.
  The control spaces (dci_controls.SPACES) need the layout and are drawn with control_seed.
  """
  if space not in SPACES:
    raise ValueError(f"unknown space {space!r}; choose from {', '.join(SPACES)}")
  if space in dci_controls.SPACES:
    if layout is None:
      raise ValueError(f"space {space!r} needs the generator's style layout")
    return dci_controls.control_codes(space, read_array(codes_job, dci_controls.SOURCE[space]), layout,
                                      control_seed)
  x = read_array(codes_job, "w" if space == "wplus" else space)
  if x.shape[1] == 0:
    raise ValueError(f"space {space!r} is empty for this model (z_dim = 0?)")
  if space == "wplus":
    x = np.tile(x, (1, num_ws))
  return x


def load_logits(path, num_samples) -> np.ndarray:
  """A precomputed (num_samples, A) logits .npy, row i = sample i (seed + i); clear errors."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"logits file not found: {path}")
  try:
    x = jobs.open_npz(path)
  except Exception as e:  # a pickle, a truncated file, not a .npy
    raise ValueError(f"{path}: not a readable numeric .npy ({e})") from e
  if x.ndim != 2 or x.shape[0] != num_samples or x.shape[1] == 0:
    raise ValueError(f"{path}: logits must have shape (num_samples={num_samples}, A) with row i for "
                     f"seed + i, got {x.shape}; regenerate it for these samples or change --num_samples")
  if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
    raise ValueError(f"{path}: logits must be finite numbers")
  return x.astype(np.float32)


def file_sha1(path) -> str:
  h = hashlib.sha1()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


# ----------------------------------------------------------------------------- evaluation


def code_names(space: str, layout, num_ws: int, w_dim: int, dim: int) -> list[str]:
  """Names of a space's code dimensions: 'z3', 'w3', 'r2:d3' (W+), 'L_C' (S)."""
  if space == "s":
    return stylespace.names_of(layout, np.arange(dim))
  if space == "wplus":
    return [f"r{r}:d{d}" for r in range(num_ws) for d in range(w_dim)]
  return [f"{space}{i}" for i in range(dim)]


def code_groups(space: str, layout, num_ws: int, w_dim: int, dim: int):
  """(group of every code (D,) int, group labels) for aggregated heat maps, or None."""
  if space == "s" or space in dci_controls.SPACES:  # controls: S-sized, blocks like S's layers
    return stylespace.layer_of_flat(layout), [f"{L.index} {L.name}" for L in layout]
  if space == "wplus":
    return np.repeat(np.arange(num_ws), w_dim), [f"w row {r}" for r in range(num_ws)]
  return None


def evaluate(codes_job: jobs.ShardedJob, logits, spaces: Sequence[str], num_ws: int, method="lasso",
             seed=0, attribute_names=None, log=None, layout=None, control_seed=0, **dci_kwargs) -> dict:
  """`dci.dci` of each space; returns {display name: result + 'seconds', 'space'}.

  Spaces are loaded one at a time (W+ and S can be large), so peak memory is one space.

  Args:
    codes_job: a finished codes job.
    logits: (N, A) logits aligned with the samples.
    spaces: flag names, see SPACES.
    num_ws: the generator's number of w rows (for W+).
    layout, control_seed: for the control spaces (see space_codes).
    method, seed, attribute_names, **dci_kwargs: forwarded to `dci.dci`.
    log: optional print-like callable for per-space timings.
  """
  results = {}
  for space in spaces:
    codes = space_codes(codes_job, space, num_ws, layout, control_seed)
    if len(codes) != len(logits):
      raise ValueError(f"{len(logits)} logits rows for {len(codes)} samples")
    t0 = time.time()
    r = dci_lib.dci(codes, logits, method, seed, attribute_names=attribute_names, **dci_kwargs)
    r.update(seconds=time.time() - t0, space=space, num_codes=codes.shape[1])
    results[SPACES[space]] = r
    if log is not None:
      log(f"DCI {SPACES[space]} ({codes.shape[1]} codes, {method}): D={r['D']:.3f} C={r['C']:.3f} "
          f"I={r['I']:.3f} in {r['seconds']:.1f}s")
    del codes
  return results


# ----------------------------------------------------------------------------- outputs


def _font():
  from PIL import ImageFont
  return ImageFont.load_default()


def importance_heatmap_png(matrix, row_labels, col_labels, title="", max_width=1400, cell_h=12):
  """(R, K) non-negative matrix -> uint8 (H, W, 3) labelled heat map (inferno-like).

  Rows are labelled on the left, columns below (rotated; every k-th label when the cells
  are too narrow). Colours are scaled by the matrix max (report.heatmap).
  """
  from PIL import Image, ImageDraw
  m = np.asarray(matrix, np.float64)
  r, k = m.shape
  cell_w = int(np.clip(max_width // max(k, 1), 1, 16))
  rgb = report.heatmap(m, size=1).repeat(cell_h, 0).repeat(cell_w, 1)
  font = _font()
  probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  text_w = lambda s: int(probe.textbbox((0, 0), str(s), font=font)[2])
  left = 6 + max([text_w(s) for s in row_labels] + [0])
  stride = int(np.ceil(12 / cell_w))  # a label needs about 12 px of width
  shown = list(range(0, k, stride))
  bottom = 6 + max([text_w(col_labels[j]) for j in shown] + [0])
  top = 16 if title else 4
  width = max(left + rgb.shape[1], left + text_w(title)) + 6
  im = Image.new("RGB", (width, top + rgb.shape[0] + bottom), (255, 255, 255))
  im.paste(Image.fromarray(rgb), (left, top))
  d = ImageDraw.Draw(im)
  if title:
    d.text((left, 2), title, fill=(0, 0, 0), font=font)
  for i, s in enumerate(row_labels):
    d.text((left - 3 - text_w(s), top + i * cell_h), str(s), fill=(0, 0, 0), font=font)
  y0 = top + rgb.shape[0] + 3
  for j in shown:
    label = Image.new("L", (text_w(col_labels[j]) + 2, 12), 0)
    ImageDraw.Draw(label).text((0, 0), str(col_labels[j]), fill=255, font=font)
    label = label.rotate(90, expand=True)
    x = left + j * cell_w + (cell_w - label.size[0]) // 2
    im.paste((0, 0, 0), (x, y0, x + label.size[0], y0 + label.size[1]), label)
  return np.asarray(im)


def heatmaps(space: str, result: Mapping, layout, num_ws: int, w_dim: int) -> dict:
  """{file stem: (uint8 image, description)} for one space's importance matrix.

  Up to MAX_FULL_CODES codes: the full matrix (rows: kept attributes, columns: codes).
  More (W+, S of any real model): the importance summed per group of codes (S: style
  layer, W+: w row), plus the TOP_K_CODES codes of largest total importance over the
  attributes. Lasso (normalize=True) and GBT importance columns sum to 1, so every
  attribute row carries the same total and the colours compare across rows.
  """
  imp = np.asarray(result["importance"])  # (D, A)
  names = [str(a) for a in result["kept_attributes"]]
  dim = imp.shape[0]
  cnames = code_names(space, layout, num_ws, w_dim, dim)
  label = SPACES[space]
  if dim <= MAX_FULL_CODES:
    img = importance_heatmap_png(imp.T, names, cnames, f"{label}: importance, attributes x codes")
    return {f"importance_{space}": (
        img, f"full importance matrix: rows = kept attributes, columns = all {dim} codes")}
  out = {}
  group, glabels = code_groups(space, layout, num_ws, w_dim, dim)
  agg = np.zeros((len(glabels), imp.shape[1]))
  np.add.at(agg, group, imp)
  what = "w row" if space == "wplus" else "style layer"
  out[f"importance_{space}"] = (
      importance_heatmap_png(agg.T, names, glabels, f"{label}: importance summed per {what}"),
      f"importance summed per {what}: rows = kept attributes, columns = {len(glabels)} {what}s")
  top = np.sort(np.argsort(-imp.sum(1), kind="stable")[:TOP_K_CODES])
  out[f"importance_{space}_top"] = (
      importance_heatmap_png(imp[top].T, names, [cnames[i] for i in top],
                             f"{label}: top {len(top)} codes by total importance"),
      f"the {len(top)} codes with the largest total importance (columns, in code order), "
      "rows = kept attributes")
  return out


def _space_json(result: Mapping, cnames, top_codes=5) -> dict:
  imp = np.asarray(result["importance"])
  per_attr = {}
  for j, name in enumerate(result["kept_attributes"]):
    order = np.argsort(-imp[:, j], kind="stable")[:top_codes]
    per_attr[str(name)] = {
        "test_accuracy": float(result["per_attribute_accuracy"][j]),
        "train_accuracy": float(result["per_attribute_train_accuracy"][j]),
        "completeness": float(result["per_factor_completeness"][j]),
        "top_codes": [[cnames[i], float(imp[i, j])] for i in order if imp[i, j] > 0]}
  return {"D": float(result["D"]), "C": float(result["C"]), "I": float(result["I"]),
          "num_codes": int(imp.shape[0]), "kept_attributes": [str(a) for a in result["kept_attributes"]],
          "seconds": float(result.get("seconds", 0.0)), "per_attribute": per_attr}


def write_outputs(outdir, results: Mapping, layout, num_ws: int, w_dim: int, settings=None,
                  timing=None, attribute_names=None) -> dict:
  """Writes dci.json, dci.md, importance.npz and importance_<space>[_top].png into outdir.

  Args:
    results: from `evaluate`.
    settings, timing: JSON-able dicts stored in dci.json.
    attribute_names: all (A,) names, to list the attributes DCI dropped.

  Returns:
    {file name: description} of the heat maps written.
  """
  out = pathlib.Path(outdir)
  out.mkdir(parents=True, exist_ok=True)
  table = dci_lib.format_table(results)
  arrays, spaces, drawn = {}, {}, {}
  for label, r in results.items():
    space = r["space"]
    dim = np.asarray(r["importance"]).shape[0]
    spaces[label] = _space_json(r, code_names(space, layout, num_ws, w_dim, dim))
    if attribute_names is not None:
      kept = set(spaces[label]["kept_attributes"])
      spaces[label]["dropped_attributes"] = [str(a) for a in attribute_names if str(a) not in kept]
    arrays[f"importance_{space}"] = np.asarray(r["importance"], np.float64)
    arrays[f"attributes_{space}"] = np.asarray([str(a) for a in r["kept_attributes"]])
    for stem, (img, what) in heatmaps(space, r, layout, num_ws, w_dim).items():
      images_lib.save_png(out / f"{stem}.png", img)
      drawn[f"{stem}.png"] = what
  jobs.atomic_save_npz(out / "importance.npz", **arrays)
  jobs.atomic_write_text(out / "dci.md", table + "\n")
  jobs.atomic_write_json(out / "dci.json", {
      "table": table, "spaces": spaces, "settings": settings or {}, "timing": timing or {},
      "heatmaps": drawn,
      "notes": ["D, C: disentanglement_lib formulas (importance-weighted); I: mean test accuracy.",
                "W+ = w broadcast to all w rows (num_ws identical copies of every w dimension).",
                "S: all style channels in generator order, toRGB included; codes named layer_channel."]})
  return drawn


def load_results(outdir) -> dict:
  """dci.json of a finished run."""
  return json.loads((pathlib.Path(outdir) / "dci.json").read_text())
