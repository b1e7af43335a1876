"""DCI of Z, W, W+ and S: resumable sampling of codes and attribute logits, evaluation, outputs.

Sampling (StyleSpace protocol, `GetCode.py --no_truncation`):
  * Sample i has seed `seed + i` and z = sampling.z_from_seeds (RandomState(seed + i).randn),
    as in `ss_jax.stylespace.stats`, so a sample can be re-rendered with `experiments.generate`.
  * psi = 1 by default (no truncation, as the paper's DCI run); another psi is applied to
    every w row. Conditional models: class label (seed + i) % c_dim, as in `ss_jax.stylespace.stats`.
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
(params replicated), with the helpers of `ss_jax.stylespace.stats`. With several processes
(`ss_jax.runtime.distributed`) each process samples its own shards (round-robin) in lock-step rounds
over the global mesh; process 0 evaluates once every shard exists.

Evaluation: `ss_jax.dci.metric.dci` per space on the stored codes; `write_outputs` writes
dci.json, dci.md (the `dci.format_table` markdown), importance.npz and heat maps.
"""

import dataclasses
import functools
import hashlib
import pathlib
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np

from ss_jax.dci import controls as dci_controls
from ss_jax.runtime import fingerprints
from ss_jax.runtime import distributed, jobs
from ss_jax.stylegan2 import sampling
from ss_jax.stylegan2.generator import flatten_styles, unflatten_styles

CODES_JOB = "dci_codes"
LOGITS_JOB = "dci_logits"
DEFAULT_SAMPLES_PER_SHARD = 5_000  # 5k x 9,088 float32 S = 180 MB per shard at 1024 px
# Flag name -> display name (the keys of `dci.format_table`); controls: see ss_jax/dci/controls.py.
SPACES = {"z": "Z", "w": "W", "wplus": "W+", "s": "S", **dci_controls.SPACES}

# The sharded batching of ss_jax.stylespace.stats (pad to the device count, params replicated, batch
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


def toyfaces_attribute_function(directory=None) -> AttributeFunction:
  """The ToyFaces attribute classifier (default: the shipped one) as a traceable function."""
  from ss_jax.toyfaces import models  # lazy: the classifier is only needed for ToyFaces runs

  clf = models.load_classifier(directory)

  def fn(images):
    return models.classifier_outputs(clf.config, clf.params, images)[0]

  return AttributeFunction(
    fn,
    tuple(clf.attribute_names),
    f"toyfaces_classifier:{fingerprints.tree_fingerprint(clf.params)[:16]}",
    traceable=True,
  )


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
  prepare = sampling.seed_inputs(cfg.z_dim, cfg.c_dim, class_idx)
  parts = [np.zeros((0, cfg.w_dim + g.num_style_channels), np.float32)]
  for out in distributed.map_batches(_codes_step(float(psi)), g, (seeds,), (), batch_size, mesh, prepare):
    parts.append(out)
    if progress is not None and len(out):
      progress.update(len(out))
  ws = np.concatenate(parts)
  return {"z": z, "w": ws[:, : cfg.w_dim], "s": ws[:, cfg.w_dim :]}


def attribute_logits(g, s, attribute_fn: AttributeFunction, batch_size=256, mesh=None, progress=None):
  """Flat S (n, C) -> logits (n, A) float32 of attribute_fn on the rendered images (n may be 0)."""
  cfg = g.config
  res, ch = cfg.img_resolution, cfg.img_channels
  parts = []
  if attribute_fn.traceable:
    batches = distributed.map_batches(_logits_step(attribute_fn), g, (s,), (), batch_size, mesh)
  else:
    batches = (
      np.asarray(attribute_fn.fn(x.reshape(len(x), res, res, ch)), np.float32) if len(x) else None
      for x in distributed.map_batches(_images_step, g, (s,), (), batch_size, mesh)
    )
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


def make_jobs(
  workdir,
  g,
  num_samples,
  attribute_fn: AttributeFunction | None = None,
  *,
  seed=0,
  psi=1.0,
  samples_per_shard=DEFAULT_SAMPLES_PER_SHARD,
  class_idx=None,
  extra_spec=None,
) -> SamplingJobs:
  """The ShardedJobs under workdir for these settings.

  Raises:
    jobs.SettingsMismatch: workdir holds a run with other settings, another model, or
      (for the logits) another attribute function.
  """
  ranges = jobs.shard_ranges(num_samples, samples_per_shard)
  spec = {
    "num_samples": int(num_samples),
    "seed": int(seed),
    "psi": float(psi),
    "samples_per_shard": int(samples_per_shard),
    "class_idx": class_idx,
    "z": "z_from_seeds(seed + i)",
    "noise_mode": "const",
    "model": fingerprints.model_fingerprint(g),
    **(extra_spec or {}),
  }
  codes = jobs.ShardedJob(workdir, CODES_JOB, spec, len(ranges))
  logits = None
  if attribute_fn is not None:
    logits = jobs.ShardedJob(workdir, LOGITS_JOB, dict(spec, attribute_fn=attribute_fn.id), len(ranges))
  return SamplingJobs(codes, logits, ranges)


def run_sampling(
  g,
  sjobs: SamplingJobs,
  attribute_fn: AttributeFunction | None = None,
  *,
  batch_size=256,
  mesh=None,
  progress=None,
  max_shards=None,
) -> int:
  """Computes this process's missing shards of both jobs; returns the number of samples computed.

  Shards are split between processes round-robin (ShardedJob.mine()); all processes
  step through the rounds in lock-step on the global mesh (ss_jax.runtime.distributed), so
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
  mesh = distributed.auto_axes(mesh or distributed.default_mesh())
  g = distributed.replicate(g, mesh)
  pending = [i for i in sjobs.codes.mine() if not sjobs.done(i)]
  if max_shards is not None:
    pending = pending[: max(int(max_shards), 0)]
  computed = 0
  for i in distributed.schedule(pending, mesh):
    a, b = sjobs.ranges[i] if i is not None else (0, 0)  # None: no rows here this round
    need_codes = i is not None and not sjobs.codes.done(i)
    need_logits = i is not None and sjobs.logits is not None and not sjobs.logits.done(i)
    codes = sample_codes(
      g,
      range(seed + a, seed + b) if need_codes else [],
      psi,
      batch_size,
      class_idx,
      mesh,
      None if need_logits else progress,
    )
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
    out[pos : pos + len(x)] = x
    pos += len(x)
  if pos != len(out):
    raise ValueError(f"{job.dir}: shards hold {pos} rows, the job expects {len(out)}")
  return out


def space_codes(codes_job: jobs.ShardedJob, space: str, num_ws: int, layout=None, control_seed=0) -> np.ndarray:
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
    return dci_controls.control_codes(space, read_array(codes_job, dci_controls.SOURCE[space]), layout, control_seed)
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
    raise ValueError(
      f"{path}: logits must have shape (num_samples={num_samples}, A) with row i for "
      f"seed + i, got {x.shape}; regenerate it for these samples or change --num_samples"
    )
  if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
    raise ValueError(f"{path}: logits must be finite numbers")
  return x.astype(np.float32)


def file_sha1(path) -> str:
  h = hashlib.sha1()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def attribute_source(logits_path, attribute_names, num_samples):
  """What the sampled codes are scored against: precomputed logits or the ToyFaces classifier.

  Returns (logits (num_samples, A) or None, AttributeFunction or None, attribute names, source dict
  for the settings).
  """
  if logits_path:
    logits = load_logits(logits_path, num_samples)
    names = attribute_names or [f"attr_{k}" for k in range(logits.shape[1])]
    if len(names) != logits.shape[1]:
      raise ValueError(f"--attribute_names has {len(names)} names for {logits.shape[1]} logit columns")
    source = {"logits_file": str(pathlib.Path(logits_path).absolute()), "logits_sha1": file_sha1(logits_path)}
    return logits, None, names, source
  attr_fn = toyfaces_attribute_function()
  return None, attr_fn, list(attr_fn.names), {"attribute_fn": attr_fn.id}


def main_progress(sjobs: SamplingJobs):
  """A jobs.Progress over this process's shards on process 0, None on the others (they advance in
  lock-step and stay quiet)."""
  if not distributed.is_main():
    return None
  mine = sjobs.codes.mine()
  size = lambda i: sjobs.ranges[i][1] - sjobs.ranges[i][0]
  return jobs.Progress(
    sum(size(i) for i in mine), "dci sampling", "samples", done=sum(size(i) for i in mine if sjobs.done(i))
  )
