"""Attribute dependency (AD, Wu et al. 2021): how much an edit of one attribute moves the others.

The paper's definition (its code was never released; see docs/stylespace_official_procedure.md
§4.4 and §7): edit images along a direction meant to change target attribute t, read every
attribute's logit l_i with a classifier before and after, and express each change in units of
that attribute's population std sigma_i (std of l_i over generator samples). For a set of
held-out images and an edit strength alpha:

  target change  = mean over images of (l_t' - l_t) / sigma_t                (signed)
  mean-AD        = mean over images of  mean_{i in O} |l_i' - l_i| / sigma_i
  max-AD         = mean over images of  max_{i in O}  |l_i' - l_i| / sigma_i

O = the "other" attributes (all but t by default; `others` restricts them, e.g. to the
attributes a classifier reads reliably). Several strengths give mean-AD / max-AD curves against
the target change; `at_target` reads a curve at a given target change (linear interpolation on
the first crossing, from the unedited point (0, 0)), so edits of different spaces compare at
a matched target change.

An edit (ss_jax.dci.ad_edits) is a flat S direction for strength 1; strength alpha renders
S + alpha * direction, alpha counting population stds of the edited code in its own space.

Images are rendered with the constant noise and classified by a `dci_sampling.AttributeFunction`
(the ToyFaces classifier by default; any images -> (N, A) logits callable with names). Held-out
images are a resumable `jobs.ShardedJob` over image seeds (`make_job` / `run_job`): each shard
holds the unedited logits (n, A) and the edited ones (n, E, K, A) for every edit and strength;
processes share the shards round-robin in lock-step (ss_jax.runtime.distributed). The population (w, S,
logits of generator samples, for sigma_i, sigma_c and sigma_u) and the classifier: ss_jax.dci.ad_population.
"""

import pathlib

import numpy as np

from ss_jax.dci import sampling as dci_sampling
from ss_jax.dci.ad_edits import edits_fingerprint
from ss_jax.stylespace import channels as stylespace
from ss_jax.runtime import fingerprints
from ss_jax.runtime import distributed, jobs, line_plot
from ss_jax.runtime import images as images_lib

DEFAULT_IMAGES_PER_SHARD = 16


# ----------------------------------------------------------------------------- the metric


def normalized_changes(base, edited, pop_std):
  """base (N, A), edited (N, ..., A), pop_std (A,) -> (edited - base) / pop_std, float64."""
  base = np.asarray(base, np.float64)
  edited = np.asarray(edited, np.float64)
  sd = np.asarray(pop_std, np.float64)
  if np.any(sd <= 0):
    raise ValueError("population stds must be positive")
  shape = (base.shape[0],) + (1,) * (edited.ndim - 2) + (base.shape[1],)
  return (edited - base.reshape(shape)) / sd


def others_mask(num_attributes, target, others=None):
  """(A,) bool: the attributes AD is taken over (others, or all), never the target."""
  m = np.ones(num_attributes, bool) if others is None else np.asarray(others, bool).copy()
  if m.shape != (num_attributes,):
    raise ValueError(f"others must be a (A={num_attributes},) bool mask, got {m.shape}")
  m[int(target)] = False
  if not m.any():
    raise ValueError("no other attributes left to measure AD over")
  return m


def ad_curves(base, edited, pop_std, target, others=None) -> dict:
  """AD of one edit at K strengths.

  Args:
    base: (N, A) logits of the unedited images.
    edited: (N, K, A) logits of the same images edited with K strengths.
    pop_std: (A,) population std of every logit.
    target: index of the target attribute.
    others: optional (A,) bool mask of the attributes AD is measured over.

  Returns:
    dict of (K,) float64: target_change, mean_ad, max_ad (see the module docstring) and
    their standard errors over images (*_sem); per_attribute (K, A) mean |change| / sigma.
  """
  z = normalized_changes(base, edited, pop_std)  # (N, K, A)
  if z.ndim != 3:
    raise ValueError(f"edited logits must be (N, K, A), got {np.shape(edited)}")
  m = others_mask(z.shape[2], target, others)
  a = np.abs(z[..., m])
  t = z[..., int(target)]
  n = z.shape[0]
  sem = lambda x: x.std(0) / np.sqrt(max(n, 1))
  return {
    "target_change": t.mean(0),
    "target_change_sem": sem(t),
    "mean_ad": a.mean(2).mean(0),
    "mean_ad_sem": sem(a.mean(2)),
    "max_ad": a.max(2).mean(0),
    "max_ad_sem": sem(a.max(2)),
    "per_attribute": np.abs(z).mean(0),
  }


def at_target(alphas, target_change, values, x_star):
  """Values of a curve at target change x_star: linear interpolation on the first crossing.

  The curve starts at the unedited point (alpha 0, change 0, value 0) and follows the
  strengths alpha > 0 in increasing order (others are ignored).

  Returns:
    (value, alpha) at the crossing, or (nan, nan) when the curve never reaches x_star.
  """
  a = np.asarray(alphas, np.float64)
  keep = a > 0
  order = np.argsort(a[keep], kind="stable")
  xs = np.concatenate([[0.0], np.asarray(target_change, np.float64)[keep][order]])
  ys = np.concatenate([[0.0], np.asarray(values, np.float64)[keep][order]])
  al = np.concatenate([[0.0], a[keep][order]])
  for k in range(1, len(xs)):
    if xs[k] >= x_star:
      f = (x_star - xs[k - 1]) / (xs[k] - xs[k - 1]) if xs[k] > xs[k - 1] else 1.0
      return float(ys[k - 1] + f * (ys[k] - ys[k - 1])), float(al[k - 1] + f * (al[k] - al[k - 1]))
  return float("nan"), float("nan")


def summarize(curve, alphas, x_star) -> dict:
  """JSON-ready curve of ad_curves plus its values at target change x_star."""
  mean_at, alpha_at = at_target(alphas, curve["target_change"], curve["mean_ad"], x_star)
  max_at, _ = at_target(alphas, curve["target_change"], curve["max_ad"], x_star)
  return {
    "alphas": [float(a) for a in alphas],
    "target_change": curve["target_change"].tolist(),
    "target_change_sem": curve["target_change_sem"].tolist(),
    "mean_ad": curve["mean_ad"].tolist(),
    "max_ad": curve["max_ad"].tolist(),
    "mean_ad_sem": curve["mean_ad_sem"].tolist(),
    "max_ad_sem": curve["max_ad_sem"].tolist(),
    "max_target_change": float(np.max(curve["target_change"])),
    "match": {"target_change": float(x_star), "alpha": alpha_at, "mean_ad": mean_at, "max_ad": max_at},
  }


# ----------------------------------------------------------------------------- the held-out job


def make_job(
  workdir,
  name,
  g,
  attribute_fn,
  seeds,
  edits,
  alphas,
  psi=1.0,
  images_per_shard=DEFAULT_IMAGES_PER_SHARD,
  extra_spec=None,
):
  """ShardedJob workdir/name over image seeds; a resume with other settings is refused."""
  seeds = [int(v) for v in seeds]
  if not seeds:
    raise ValueError("no held-out seeds given")
  if not edits:
    raise ValueError("no edits given")
  alphas = [float(a) for a in np.ravel(alphas)]
  if not alphas:
    raise ValueError("no edit strengths given")
  per = int(images_per_shard)
  if per < 1:
    raise ValueError(f"images_per_shard must be positive, got {per}")
  spec = {
    "kind": "attribute_dependency",
    "model": fingerprints.model_fingerprint(g),
    "seeds": seeds,
    "alphas": alphas,
    "psi": float(psi),
    "attribute_fn": attribute_fn.id,
    "noise_mode": "const",
    "edits": [e.name for e in edits],
    "edits_sha1": edits_fingerprint(edits),
    "images_per_shard": per,
    **(extra_spec or {}),
  }
  return jobs.ShardedJob(workdir, name, spec, -(-len(seeds) // per))


def _edited_styles(s, d, alphas):
  """(n, C), (C,), (K,) -> (n * K, C) float32: row i * K + k = s_i + alpha_k d."""
  x = s[:, None, :] + np.asarray(alphas, np.float32)[None, :, None] * np.asarray(d, np.float32)[None, None]
  return x.reshape(-1, s.shape[1])


def run_job(job, g, edits, attribute_fn, batch_size=128, mesh=None, progress=None, rows_per_call=None) -> int:
  """Computes this process's missing shards: base (n, A), edited (n, E, K, A) logits, seeds (n,).

  Every process calls it (lock-step rounds); batch_size = renders per step per process.
  The edited styles of several edits go through one call of at least `rows_per_call` rows
  (default 8 * batch_size), so steps are full whatever the shard size.
  progress: optional object with update(n), called with the renders of each batch.
  Returns the number of held-out images this process computed.
  """
  spec = job.spec
  if [e.name for e in edits] != spec["edits"] or edits_fingerprint(edits) != spec["edits_sha1"]:
    raise ValueError("the edits differ from the ones this job was made with")
  seeds, per, alphas = spec["seeds"], spec["images_per_shard"], np.asarray(spec["alphas"], np.float32)
  mesh = distributed.auto_axes(mesh or distributed.default_mesh())
  g = distributed.replicate(g, mesh)
  c, done, k = stylespace.num_channels(g.layout), 0, len(alphas)
  rows_per_call = int(rows_per_call or 8 * batch_size)
  for i in distributed.schedule(job.pending(), mesh):
    batch = seeds[i * per : (i + 1) * per] if i is not None else []
    s = dci_sampling.sample_codes(g, batch, spec["psi"], batch_size, None, mesh)["s"].reshape(-1, c)
    base = dci_sampling.attribute_logits(g, s, attribute_fn, batch_size, mesh, progress)
    group = max(1, -(-rows_per_call // (per * k)))  # edits per call, from the agreed shard size
    edited = []
    for a in range(0, len(edits), group):
      x = np.concatenate(
        [np.zeros((0, c), np.float32)] + [_edited_styles(s, e.direction, alphas) for e in edits[a : a + group]]
      )
      out = dci_sampling.attribute_logits(g, x, attribute_fn, batch_size, mesh, progress)
      if len(s):  # rows: edit, image, strength
        edited.append(out.reshape(-1, len(s), k, out.shape[-1]))
    if i is None:
      continue
    job.write(i, seeds=np.asarray(batch, np.int64), base=base, edited=np.concatenate(edited).transpose(1, 0, 2, 3))
    done += len(batch)
  return done


def num_renders(job) -> int:
  """Renders of the whole job (unedited + every edit at every strength)."""
  spec = job.spec
  return len(spec["seeds"]) * (1 + len(spec["edits"]) * len(spec["alphas"]))


def read_job(job):
  """(base (N, A), edited (N, E, K, A)) of a finished job."""
  out = job.read_all(["base", "edited"])
  return out["base"], out["edited"]


def run_and_read(job, g, edits, attribute_fn, batch_size=128, progress=None, mesh=None):
  """run_job, wait for every process's shards, read_job."""
  run_job(job, g, edits, attribute_fn, batch_size, mesh, progress)
  distributed.wait_for_shards(job)
  return read_job(job)


def evaluate(base, edited, edits, targets, alphas, pop_std, attribute_names, x_star, others=None):
  """AD curves of every edit of a finished job.

  Args:
    base, edited: from read_job, (N, A) and (N, E, K, A).
    edits: the E edits; targets: (E,) target attribute index of each.
    alphas: (K,) strengths; pop_std: (A,); attribute_names: (A,).
    x_star: matched target change (sigma); others: optional (A,) bool mask.

  Returns:
    [{'target': name, 'edit': name, 'space', 'meta', 'summary': summarize(...)}] in edit order.
  """
  if len(edits) != len(targets) or np.shape(edited)[1] != len(edits):
    raise ValueError(f"{len(edits)} edits, {len(targets)} targets, {np.shape(edited)[1]} edited columns")
  out = []
  for j, (e, t) in enumerate(zip(edits, targets)):
    curve = ad_curves(base, edited[:, j], pop_std, int(t), others)
    out.append(
      {
        "target": str(attribute_names[int(t)]),
        "edit": e.name,
        "space": e.space,
        "meta": e.meta,
        "summary": summarize(curve, alphas, x_star),
      }
    )
  return out


# ----------------------------------------------------------------------------- outputs


def _num(v, digits=2):
  return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def curves_markdown(results, x_star) -> str:
  """Markdown of [{'target', 'edit', 'summary'}, ...]: matched values, then every strength."""
  lines = [
    f"AD at target change {x_star:g} sigma (interpolated; n/a: never reached)",
    "",
    "| target | edit | max target change (σ) | alpha at match | mean-AD | max-AD |",
    "|---|---|---|---|---|---|",
  ]
  for r in results:
    s = r["summary"]
    lines.append(
      f"| {r['target']} | {r['edit']} | {_num(s['max_target_change'])} | "
      f"{_num(s['match']['alpha'])} | {_num(s['match']['mean_ad'], 3)} | "
      f"{_num(s['match']['max_ad'], 3)} |"
    )
  lines += [
    "",
    "Every strength:",
    "",
    "| target | edit | alpha | target change (σ) | mean-AD | max-AD |",
    "|---|---|---|---|---|---|",
  ]
  for r in results:
    s = r["summary"]
    for a, t, m, x in zip(s["alphas"], s["target_change"], s["mean_ad"], s["max_ad"]):
      lines.append(f"| {r['target']} | {r['edit']} | {a:g} | {t:.2f} | {m:.3f} | {x:.3f} |")
  return "\n".join(lines)


def plot_target(results, target, x_star=None):
  """(H, W, 3) uint8: mean-AD and max-AD against target change for every edit of `target`."""
  rows = [r for r in results if r["target"] == target]
  panels = []
  for key, label in (("mean_ad", "mean-AD"), ("max_ad", "max-AD")):
    series = []
    for r in rows:  # each curve up to its largest target change (the part `at_target` reads; all in ad.md)
      s = r["summary"]
      stop = int(np.argmax(s["target_change"])) + 1
      series.append((r["edit"], [0.0] + s["target_change"][:stop], [0.0] + s[key][:stop]))
    # The default PIL font has no Greek letters: 'sd' on the plots.
    panels.append(
      line_plot.line_plot(
        series,
        f"{target}: {label} (other attributes, sd units)",
        f"target change ({target} logit, sd units)",
        vlines=() if x_star is None else (x_star,),
      )
    )
  return line_plot.side_by_side(panels)


def write_outputs(outdir, results, x_star, settings=None, stem="ad") -> list:
  """stem.json, stem.md and stem_<target>.png per target attribute; returns the PNG names."""
  out = pathlib.Path(outdir)
  out.mkdir(parents=True, exist_ok=True)
  pngs = []
  for target in dict.fromkeys(r["target"] for r in results):
    name = f"{stem}_{target}.png"
    images_lib.save_png(out / name, plot_target(results, target, x_star))
    pngs.append(name)
  table = curves_markdown(results, x_star)
  jobs.atomic_write_text(out / f"{stem}.md", table + "\n")
  jobs.atomic_write_json(
    out / f"{stem}.json",
    {
      "results": results,
      "match_target_change": x_star,
      "settings": settings or {},
      "plots": pngs,
      "definition": "target change = mean_images dl_t/sigma_t; mean-AD = mean_images mean_{i!=t} "
      "|dl_i|/sigma_i; max-AD = mean_images max_{i!=t} |dl_i|/sigma_i; sigma = population "
      "std of the logit",
    },
  )
  return pngs
