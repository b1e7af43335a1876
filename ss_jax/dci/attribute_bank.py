"""Exemplar banks from a classifier and the resumable, sharded check of attribute channels.

A run has two ShardedJobs under its workdir(s):

* The bank: `dci_sampling`'s codes + logits jobs (seeds bank_seed + i, psi, const
  noise; shards of samples, resumable, split between processes). A DCI workdir with the
  same settings and model is a valid bank, and vice versa.
* `attribute_check/`: one shard per attribute, holding `evaluate_attribute`'s arrays
  (detection curves with and without the locally-active restriction, rankings, edit
  scores). Shards are split round-robin between processes, which step in lock-step
  (`distributed.schedule`) because rendering the edits runs on the global mesh.

ss_jax.dci.attribute_summary turns the finished shards into JSON rows, a markdown table and files; see
ss_jax.stylespace.attribute_detection for the definitions. The world-specific parts (attribute
names, regions, reliable attributes) arrive in an `AttributeClassifier`, built by the
caller (for ToyFaces: ss_jax.toyfaces.regions.classifier()).
"""

import dataclasses
import importlib
from typing import Mapping, Sequence

import numpy as np

from ss_jax.stylespace import attribute_channels as ac
from ss_jax.stylespace import attribute_detection as det
from ss_jax.dci import sampling as dci_sampling
from ss_jax.dci.attribute_summary import mean_curves, summary_row, write_outputs
from ss_jax.runtime import distributed, jobs
from ss_jax.stylespace import stats

# Name -> module whose classifier() returns an AttributeClassifier (names, regions, logits function).
CLASSIFIERS = {"toyfaces": "ss_jax.toyfaces.regions"}

CHECK_JOB = "attribute_check"
RANDOM_JOB = "random_channels"
NUM_RANDOM = 8  # random conv channels edited as the baseline of every attribute's edits
TOP_K = 10  # ranked channels kept per attribute and condition


@dataclasses.dataclass(frozen=True, eq=False)
class AttributeClassifier:
  """An attribute function plus what the analysis needs to know about its attributes.

  Attributes:
    fn: images -> logits (see dci_sampling.AttributeFunction); fn.names are the attributes.
    regions: attribute name -> categories of the segmentation (e.g. ('hair', 'eyebrow')) whose
      locally-active channels may carry it; None or absent: a global attribute (no restriction).
    reliable: (A,) bool, attributes the classifier reads well enough to count as leaks.
  """

  fn: dci_sampling.AttributeFunction
  regions: Mapping[str, tuple | None]
  reliable: np.ndarray


@dataclasses.dataclass(frozen=True)
class CheckSettings:
  """Everything that determines one attribute's check (part of the job's spec)."""

  num_eval: int = 128  # held-out images edited per attribute
  num_exemplars: int = 30  # exemplars of the main ranking (strongest of the pool)
  num_reference: int = 200  # strongest exemplars of the reference bank (and the pool draws)
  sizes: tuple = det.DEFAULT_SIZES
  num_draws: int = 100
  split_seed: int = 0
  curve_seed: int = 0
  alphas: tuple = (5.0, 10.0, 20.0)  # edit strengths in channel stds
  edit_top: int = 3  # top channels of the main ranking that are edited
  lowest: bool = False  # exemplars = lowest logits instead of highest
  include_torgb: bool = False


def has_edits(clf, cs: CheckSettings) -> bool:
  """Edits are rendered only with a classifier, held-out images and at least one strength."""
  return clf is not None and cs.num_eval > 0 and len(cs.alphas) > 0


def make_bank(
  workdir, g, num_samples, attribute_fn=None, *, seed=0, psi=1.0, samples_per_shard=5_000, checkpoint=None
) -> dci_sampling.SamplingJobs:
  """The bank's ShardedJobs (codes, and logits when attribute_fn is given); see dci_sampling.make_jobs."""
  extra = {"checkpoint": str(checkpoint)} if checkpoint is not None else None
  return dci_sampling.make_jobs(
    workdir, g, num_samples, attribute_fn, seed=seed, psi=psi, samples_per_shard=samples_per_shard, extra_spec=extra
  )


def make_check_job(
  workdir, attributes: Sequence[str], settings: CheckSettings, bank_spec: Mapping, **extra
) -> jobs.ShardedJob:
  """One shard per attribute; refuses to resume with other settings, bank or restriction."""
  spec = dict(dataclasses.asdict(settings), attributes=list(attributes), bank=dict(bank_spec), **extra)
  return jobs.ShardedJob(workdir, CHECK_JOB, spec, len(attributes))


def _strongest_styles(s, logits, t, rows, k, largest):
  return s[det.strongest(logits[:, t], rows, k, largest)]


def _curve(s, logits, t, split, mean, std, mask, cs: CheckSettings):
  _, pool, ref = split
  largest = not cs.lowest
  n_ref = min(cs.num_reference, len(pool), len(ref))
  return det.accuracy_curve(
    _strongest_styles(s, logits, t, pool, n_ref, largest),
    _strongest_styles(s, logits, t, ref, n_ref, largest),
    mean,
    std,
    mask,
    cs.sizes,
    cs.num_draws,
    [cs.curve_seed, t],
  )


def detect_attribute(s, logits, t: int, layout, mean, std, cs: CheckSettings, local_channels=None) -> dict:
  """Rankings and detection curves of attribute column t (no rendering).

  Args:
    s: (N, C) bank styles; logits: (N, A) bank logits; mean, std: (C,) population stats.
    local_channels: names of the region's verified locally-active channels, or None.

  Returns:
    dict of numpy arrays (one shard): sizes, acc_all, acc_local (-1 without restriction: ref_local < 0),
    ref_all, ref_local, pool_top_all, pool_top_local (-1 without), top_all, theta_all,
    top_local (-1 padded), z_mean (C,), num_local (candidates after the restriction).
  """
  split = det.split_bank(len(s), cs.num_eval, cs.split_seed)
  ex = _strongest_styles(s, logits, t, split[1], min(cs.num_exemplars, len(split[1])), not cs.lowest)
  main = ac.find_channels(ex, mean, std, layout, cs.include_torgb)
  mask_all = ac.candidate_mask(layout, cs.include_torgb)
  c_all = _curve(s, logits, t, split, mean, std, mask_all, cs)
  top_local, num_local = np.full(TOP_K, -1), 0
  acc_local, ref_local, pool_local = np.full(len(c_all["sizes"]), -1.0), -1, -1  # shards hold no NaN
  mask_local = None
  if local_channels:
    try:
      mask_local = ac.candidate_mask(layout, cs.include_torgb, list(local_channels))
    except ValueError:  # the region's channels are all toRGB (excluded): treated as no restriction
      pass
  if mask_local is not None:
    num_local = int(mask_local.sum())
    c_loc = _curve(s, logits, t, split, mean, std, mask_local, cs)
    acc_local, ref_local, pool_local = c_loc["accuracy"], c_loc["reference"], c_loc["pool_top"]
    order = ac.rank(main["theta"], mask_local)[:TOP_K]
    top_local[: len(order)] = order
  top = main["ranking"][:TOP_K]
  return {
    "sizes": c_all["sizes"],
    "acc_all": c_all["accuracy"],
    "acc_local": acc_local,
    "ref_all": c_all["reference"],
    "ref_local": ref_local,
    "pool_top_all": c_all["pool_top"],
    "pool_top_local": pool_local,
    "top_all": top,
    "theta_all": main["theta"][top],
    "top_local": top_local,
    "z_mean": main["z_mean"],
    "num_local": num_local,
  }


def edit_channels(d: Mapping, edit_top: int) -> np.ndarray:
  """Channels to edit: top edit_top of the main ranking, the restricted top 1, the references."""
  cand = list(d["top_all"][:edit_top]) + [d["top_local"][0], d["ref_all"], d["ref_local"]]
  out = []
  for c in (int(c) for c in cand):
    if c >= 0 and c not in out:
      out.append(c)
  return np.array(out, np.int64)


def check_attribute(
  g, s, logits, t, clf: AttributeClassifier, mean, std, cs: CheckSettings, local_channels=None, mesh=None
) -> dict:
  """detect_attribute + edits of edit_channels on the held-out images, scored by clf."""
  d = detect_attribute(s, logits, t, g.layout, mean, std, cs, local_channels)
  chans = edit_channels(d, cs.edit_top)
  dirs = np.where(d["z_mean"][chans] >= 0, 1.0, -1.0)
  eval_s = s[det.split_bank(len(s), cs.num_eval, cs.split_seed)[0]]
  rows = det.edited_styles(eval_s, chans, dirs, cs.alphas, std).reshape(-1, s.shape[1])
  out = dci_sampling.attribute_logits(g, np.concatenate([eval_s, rows]), clf.fn, mesh=mesh)
  base, edited = out[: len(eval_s)], out[len(eval_s) :].reshape(len(chans), len(cs.alphas), len(eval_s), -1)
  m = det.edit_metrics(base, edited, t, -1.0 if cs.lowest else 1.0, logits.std(0), clf.reliable)
  d.update(
    edit_channels=chans,
    edit_directions=dirs,
    alphas=np.asarray(cs.alphas, np.float64),
    **{f"edit_{k}": v for k, v in m.items()},
  )
  return d


def run_checks(
  g,
  s,
  logits,
  targets: Sequence[int],
  clf: AttributeClassifier | None,
  check: jobs.ShardedJob,
  mean,
  std,
  cs: CheckSettings,
  local: Mapping[int, Sequence[str] | None],
  mesh=None,
  progress=None,
) -> int:
  """Computes this process's missing attribute shards (shard i = targets[i]); returns how many.

  Without edits (see has_edits: clf None, no eval images or no strengths): detection only.
  Every process must call this (lock-step rounds when edits are rendered on a multi-process mesh).
  """
  clf = clf if has_edits(clf, cs) else None
  mesh = distributed.auto_axes(mesh or distributed.default_mesh()) if clf is not None else None
  gg = distributed.replicate(g, mesh) if clf is not None else g
  done = 0
  for i in distributed.schedule(check.pending(), mesh):
    if i is None:  # no attribute left here this round: step through the collective render
      if clf is not None:
        dci_sampling.attribute_logits(gg, np.zeros((0, s.shape[1]), np.float32), clf.fn, mesh=mesh)
      continue
    t = targets[i]
    if clf is None:
      d = detect_attribute(s, logits, t, g.layout, mean, std, cs, local.get(t))
    else:
      d = check_attribute(gg, s, logits, t, clf, mean, std, cs, local.get(t), mesh)
    check.write(i, **d)
    done += 1
    if progress is not None:
      progress.update(1)
  return done


def random_channel_edits(
  g, s, clf: AttributeClassifier | None, std, cs: CheckSettings, job: jobs.ShardedJob, mesh=None
) -> None:
  """The baseline: NUM_RANDOM random conv channels (random signs) edited on the held-out images.

  Writes job's one shard: channels (R,), directions (R,), base (n, A) and edited (R, S, n, A)
  logits; the same for every attribute (edit_metrics reads any target from it). Channels and
  signs come from default_rng([split_seed, 99]). No-op without edits (has_edits).
  """
  if not has_edits(clf, cs):
    return
  mesh = distributed.auto_axes(mesh or distributed.default_mesh())
  gg = distributed.replicate(g, mesh)
  for i in distributed.schedule(job.pending(), mesh):
    if i is None:
      dci_sampling.attribute_logits(gg, np.zeros((0, s.shape[1]), np.float32), clf.fn, mesh=mesh)
      continue
    rng = np.random.default_rng([cs.split_seed, 99])
    chans = np.sort(
      rng.choice(np.flatnonzero(ac.candidate_mask(g.layout, cs.include_torgb)), NUM_RANDOM, replace=False)
    )
    dirs = rng.choice([-1.0, 1.0], NUM_RANDOM)
    eval_s = s[det.split_bank(len(s), cs.num_eval, cs.split_seed)[0]]
    rows = det.edited_styles(eval_s, chans, dirs, cs.alphas, std).reshape(-1, s.shape[1])
    out = dci_sampling.attribute_logits(gg, np.concatenate([eval_s, rows]), clf.fn, mesh=mesh)
    n = len(eval_s)
    job.write(
      i, channels=chans, directions=dirs, base=out[:n], edited=out[n:].reshape(NUM_RANDOM, len(cs.alphas), n, -1)
    )


def bank_moments(s):
  """(C,) float64 mean and std (ddof 0) of the bank's styles, by chunks of rows."""
  m = stats.empty_moments(s.shape[1])
  for a in range(0, len(s), 4096):
    m = stats.merge_moments(m, stats.batch_moments(s[a : a + 4096]))
  count, mean, m2 = m
  return mean, np.sqrt(m2 / count)


# ----------------------------------------------------------------------------- whole run


def parse_targets(spec, names: Sequence[str]) -> list[int]:
  """'all', or comma-separated attribute names / column indices -> column indices."""
  if spec is None or str(spec).strip() == "all":
    return list(range(len(names)))
  out = []
  for item in (x.strip() for x in str(spec).split(",") if x.strip()):
    if item in names:
      out.append(list(names).index(item))
    elif item.isdigit() and int(item) < len(names):
      out.append(int(item))
    else:
      raise ValueError(f"unknown attribute {item!r}; choose from {', '.join(names)} (or a column index)")
  return out


def run(
  g,
  workdir,
  bank: dci_sampling.SamplingJobs,
  targets: Sequence[int],
  names: Sequence[str],
  cs: CheckSettings,
  clf: AttributeClassifier | None = None,
  logits=None,
  regions=None,
  verified=None,
  population=None,
  batch_size=256,
  log=print,
  **spec_extra,
):
  """Samples the bank's missing shards, checks every target attribute (resumable), returns summary rows.

  Args:
    bank: from make_bank (with clf.fn when clf is given, else codes only and `logits` given).
    targets, names: attribute columns to check, all attribute names.
    clf: scores the bank and the edits; None: `logits` (N, A) from a file, detection only.
    regions: attribute name -> categories (None: global); verified: a verified.json path.
    population: {'mean': (C,), 'std': (C,)} of S (e.g. stats.load); default: the bank's own moments.
    **spec_extra: plain data added to the check job's spec (checkpoint, sources, ...).

  Returns:
    On process 0, once every shard exists: dict(rows (summary_row per target), curves
    (mean_curves), settings (the check job's spec)); None on the other processes.
  """
  total = sum(b - a for a, b in bank.ranges)
  progress = None
  if distributed.is_main():
    progress = jobs.Progress(total, "bank sampling", "samples", done=bank.done_samples())
  dci_sampling.run_sampling(g, bank, clf.fn if clf else None, batch_size=batch_size, progress=progress)
  distributed.wait_for_shards(*[j for j in (bank.codes, bank.logits) if j is not None])
  s = dci_sampling.read_array(bank.codes, "s")
  if logits is None:
    logits = dci_sampling.read_array(bank.logits, "logits")
  mean, std = (population["mean"], population["std"]) if population is not None else bank_moments(s)
  local, key = {}, None
  for t in targets:
    cats = (regions or {}).get(names[t])
    local[t], key = det.verified_channels(verified, cats) if verified and cats else (None, key)
  check = make_check_job(
    workdir,
    [names[t] for t in targets],
    cs,
    bank.codes.spec,
    local_list=key,
    local_channels={names[t]: local[t] for t in targets},
    **spec_extra,
  )
  log(
    f"checking {len(targets)} attribute(s) on a bank of {len(s)} samples; "
    f"{len(targets) - len(check.pending())} already done, in {check.dir}"
  )
  prog = (
    jobs.Progress(len(check.mine()), "attribute checks", "attributes", done=len(check.mine()) - len(check.pending()))
    if distributed.is_main()
    else None
  )
  run_checks(g, s, logits, targets, clf, check, mean, std, cs, local, progress=prog)
  rand = jobs.ShardedJob(workdir, RANDOM_JOB, dict(check.spec, num_random=NUM_RANDOM), 1)
  random_channel_edits(g, s, clf, std, cs, rand)
  distributed.wait_for_shards(check, *([rand] if has_edits(clf, cs) else []))
  if not distributed.is_main():
    return None
  base = rand.read(0) if rand.done(0) else None
  rows = []
  for i, t in enumerate(targets):
    rnd = base and det.edit_metrics(base["base"], base["edited"], t, 1.0, logits.std(0), clf.reliable)
    rows.append(summary_row(check.read(i), names[t], g.layout, names, regions, random=rnd))
  return {"rows": rows, "curves": mean_curves(rows), "settings": check.spec}


def bank_mode(
  g,
  out,
  cs: CheckSettings,
  attribute="all",
  classifier=None,
  logits_path=None,
  *,
  bank_size=20_000,
  bank_seed=0,
  bank_workdir=None,
  psi=1.0,
  samples_per_shard=5_000,
  checkpoint=None,
  verified=None,
  stats_path=None,
  batch_size=64,
):
  """experiments.attribute_channels' bank mode: a classifier's (or a logits file's) bank, checks, outputs.

  classifier: a registered name ('toyfaces') scoring the bank and the edits; else logits_path, a
  (bank_size, A) .npy (row i = seed bank_seed + i), detection only (cs.num_eval is set to 0).
  attribute: names / column indices, comma-separated, or 'all' (parse_targets). The bank lives in
  bank_workdir (default: out); verified: a verified.json; stats_path: stats.npz of the population
  moments (default: the bank's own). Writes write_outputs' files on process 0; returns run's result.
  """
  if classifier not in (None, *CLASSIFIERS):
    raise ValueError(f"--classifier: unknown {classifier!r}; registered: {', '.join(sorted(CLASSIFIERS))}")
  clf, regions, logits = None, None, None
  if classifier:  # the world registers its classifier (segmentation.PLUGINS does the same for segmenters)
    clf = importlib.import_module(CLASSIFIERS[classifier]).classifier()
    names, regions, src = list(clf.fn.names), clf.regions, {"classifier": clf.fn.id}
  else:
    logits = dci_sampling.load_logits(logits_path, bank_size)
    names = [f"attr_{k}" for k in range(logits.shape[1])]
    src = {"logits_sha1": dci_sampling.file_sha1(logits_path)}
    cs = dataclasses.replace(cs, num_eval=0)  # no classifier: no edits
  targets = parse_targets(attribute, names)
  bank = make_bank(
    bank_workdir or out,
    g,
    bank_size,
    clf and clf.fn,
    seed=bank_seed,
    psi=psi,
    samples_per_shard=samples_per_shard,
    checkpoint=checkpoint,
  )
  population = stats.load(stats_path, g.layout) if stats_path else None
  result = run(g, out, bank, targets, names, cs, clf, logits, regions, verified, population, batch_size, **src)
  if result is not None:
    write_outputs(out, result)
  return result
