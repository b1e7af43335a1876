"""Single S channels vs W / W+ directions (InterFaceGAN, GANSpace, SeFa) by AD at a matched target change.

The protocol (`run`), for every target attribute t that the classifier reads reliably:

1. Population: N generator samples (seeds population_seed + i, psi as given) with w, S and
   logits (`ad_population.population`): the logit stds sigma_i, the channel stds
   sigma_c, the W stds along each direction, the InterFaceGAN training set, the GANSpace PCA
   and the exemplar bank.
2. Candidates (no held-out images used):
   * S (theta): the `s_candidates` top channels of `attribute_channels.find_channels` on
     the `num_exemplars` population samples with the highest logit t (the paper's exemplar
     procedure); "S theta-top" is the first one, edited in the sign of its mean normalised
     difference (as the paper), with no further selection.
   * InterFaceGAN: the logistic boundary normal in W between population samples with
     logit t > 0 and <= 0, applied to every w row (W).
   * GANSpace: the `num_components` principal axes of the population's w, each applied to
     every w row range of `row_ranges` (all rows, and thirds: coarse / middle / fine) = W+.
   * SeFa: per row range, the `num_components` top eigenvectors of A^T A of the conv style
     layers fed by those rows, applied to those rows.
3. Selection on `num_select` selection images (seeds select_seed + i, disjoint from the
   population and from the evaluation images): every candidate is applied with both signs
   at strength `select_alpha` (population stds of its code along it); for each method the
   (candidate, sign) with the largest mean target change is kept ("S best", "GANSpace",
   "SeFa"; InterFaceGAN has one direction and points to the positive class).
4. Evaluation on `num_eval` held-out images (seeds eval_seed + i): the kept edits at every
   strength of `alphas`; mean-AD and max-AD over the other *reliable* attributes, read at
   each target change of `matches` (sigma_t units) by interpolation; n/a where an edit never gets there.

Selection and evaluation are resumable `attribute_dependency` jobs; results are deterministic
for given settings (kill and rerun gives the same numbers).
"""

import dataclasses
import pathlib

import numpy as np

from ss_jax.stylespace import attribute_channels, directions
from ss_jax.runtime import jobs
from ss_jax.dci import ad_edits, ad_population
from ss_jax.dci import attribute_dependency as ad

METHODS = ("S best", "S theta-top", "InterFaceGAN", "GANSpace", "SeFa")
# ToyFaces targets of the short default run (the attributes issue 17 discusses).
DEFAULT_TARGETS = ["hair_color", "clothes_color", "glasses", "hat", "mouth_open", "bangs"]


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes and seeds of one comparison (all of them go into the jobs' settings)."""

  num_population: int = 1000
  population_seed: int = 0
  num_select: int = 8
  select_seed: int = 1_000_000
  num_eval: int = 16
  eval_seed: int = 2_000_000
  psi: float = 1.0
  alphas: tuple = (1.0, 2.0, 4.0, 8.0, 16.0)
  select_alpha: float = 4.0
  num_exemplars: int = 30
  s_candidates: int = 3
  num_components: int = 6
  row_ranges: tuple | None = None  # None: directions.default_row_ranges(num_ws)
  matches: tuple = (0.5, 1.0)  # target changes (sigma_t) at which AD is compared
  min_rate: float = 0.05
  images_per_shard: int = 8
  population_per_shard: int = 1000

  def check(self):
    pop = range(self.population_seed, self.population_seed + self.num_population)
    sel = range(self.select_seed, self.select_seed + self.num_select)
    ev = range(self.eval_seed, self.eval_seed + self.num_eval)
    for a, b, what in (
      (pop, sel, "population and selection"),
      (pop, ev, "population and evaluation"),
      (sel, ev, "selection and evaluation"),
    ):
      if a.start < b.stop and b.start < a.stop:
        raise ValueError(f"the {what} seeds overlap: the sets must be disjoint")
    if min(self.num_population, self.num_select, self.num_eval) < 2:
      raise ValueError("population, selection and evaluation need at least 2 images each")
    if not self.alphas or min(self.alphas) <= 0 or self.select_alpha <= 0:
      raise ValueError("edit strengths must be positive (each edit is signed towards its target)")
    if not self.matches or min(self.matches) <= 0:
      raise ValueError("the matched target changes must be positive")

  def job_spec(self):
    """The settings that determine the computed shards (not the matched changes: read-out only)."""
    return {k: v for k, v in dataclasses.asdict(self).items() if k != "matches"}


def _negated(e: ad_edits.Edit) -> ad_edits.Edit:
  """The opposite edit, named with ' (-)' toggled."""
  name = e.name[:-4] if e.name.endswith(" (-)") else e.name + " (-)"
  return ad_edits.Edit(name, e.space, -e.direction, dict(e.meta, sign=-e.meta.get("sign", 1.0)))


def w_candidates(g, w, settings: Settings):
  """GANSpace and SeFa candidates (shared by every attribute): {'GANSpace': [Edit], 'SeFa': [Edit]}."""
  ranges = settings.row_ranges or tuple(directions.default_row_ranges(g.config.num_ws))
  pca = directions.ganspace(w, settings.num_components)
  out = {"GANSpace": [], "SeFa": []}
  for spec in ranges:
    rows = directions.parse_rows(spec, g.config.num_ws)
    for j, u in enumerate(pca["components"]):
      out["GANSpace"].append(
        ad_edits.w_edit(
          g,
          u,
          ad_edits.direction_std(w, u),
          rows,
          f"GANSpace pc{j} rows {spec}",
          meta={"component": j, "method": "GANSpace"},
        )
      )
    layers = directions.layers_of_rows(g.layout, rows)
    if not layers:
      continue
    sf = directions.sefa(g, layers, settings.num_components)
    for j, u in enumerate(sf["components"]):
      out["SeFa"].append(
        ad_edits.w_edit(
          g,
          u,
          ad_edits.direction_std(w, u),
          rows,
          f"SeFa ev{j} rows {spec}",
          meta={"component": j, "layers": layers, "method": "SeFa"},
        )
      )
  return out


def s_candidates(g, pop, t, settings: Settings):
  """[Edit] top channels of attribute t by theta (sign of the mean normalised difference)."""
  mean, std = pop["s"].mean(0), pop["s"].std(0)
  ex = attribute_channels.top_by_attribute(pop["logits"], int(t), settings.num_exemplars)
  r = attribute_channels.find_channels(pop["s"][ex], mean, std, g.layout)
  out = []
  for rank, f in enumerate(r["ranking"][: settings.s_candidates]):
    e = ad_edits.channel_edit(g.layout, [int(f)], std, sign=np.sign(r["z_mean"][f]) or 1.0)
    e.meta.update(theta=float(r["theta"][f]), theta_rank=rank + 1)
    out.append(e)
  return out


def interfacegan_edit(g, pop, t, name):
  fit = directions.interfacegan(pop["w"], pop["logits"][:, int(t)] > 0)
  return ad_edits.w_edit(
    g,
    fit["direction"],
    ad_edits.direction_std(pop["w"], fit["direction"]),
    None,
    f"InterFaceGAN {name}",
    meta={k: fit[k] for k in ("train_accuracy", "holdout_accuracy", "l2")},
  )


def _unique(edits):
  """Edits by name, first occurrence; the same name must mean the same direction."""
  seen = {}
  for e in edits:
    if e.name in seen and not np.array_equal(seen[e.name].direction, e.direction):
      raise ValueError(f"two different edits are both named {e.name!r}")
    seen.setdefault(e.name, e)
  return list(seen.values())


def _best(candidates, base, edited, column, t, sd):
  """(Edit, score) with the largest mean target change over candidates x signs (-a, +a)."""
  best, score = None, -np.inf
  for e in candidates:
    dt = (edited[:, column[e.name], :, t] - base[:, None, t]).mean(0) / sd[t]  # (2,): -a, +a
    for k, cand in ((1, e), (0, _negated(e))):
      if dt[k] > score:
        best, score = cand, float(dt[k])
  return best, score


def run(
  workdir,
  g,
  attribute_fn,
  reliable,
  settings: Settings = Settings(),
  batch_size=128,
  log=print,
  progress=None,
  targets=None,
):
  """The comparison; returns the result dict (also written by `write_outputs` on process 0).

  Args:
    attribute_fn: a dci_sampling.AttributeFunction (names required).
    reliable: (A,) bool: attributes that may be targets and count in AD.
    progress: optional factory (total, label) -> object with update(n).
    targets: optional (A,) bool: restrict the targets (AD still counts every reliable attribute).
  """
  settings.check()
  names = list(attribute_fn.names)
  reliable = np.asarray(reliable, bool)
  if reliable.shape != (len(names),) or reliable.sum() < 2:
    raise ValueError(f"need a (A={len(names)},) reliability mask with at least 2 reliable attributes")
  workdir = pathlib.Path(workdir)
  mk = (lambda total, label: progress(total, label)) if progress else (lambda total, label: None)
  log(f"population: {settings.num_population} samples (w, S, logits)")
  pop = ad_population.population(
    workdir,
    g,
    attribute_fn,
    settings.num_population,
    settings.population_seed,
    settings.psi,
    settings.population_per_shard,
    batch_size,
    mk(settings.num_population, "population"),
  )
  sd = ad_population.logit_std(pop["logits"])
  rate = (pop["logits"] > 0).mean(0)
  wanted = np.ones(len(names), bool) if targets is None else np.asarray(targets, bool)
  usable = [t for t in range(len(names)) if reliable[t] and settings.min_rate <= rate[t] <= 1 - settings.min_rate]
  skipped = {
    names[t]: ("unreliable classifier head" if not reliable[t] else f"positive rate {rate[t]:.3f}")
    for t in range(len(names))
    if t not in usable and wanted[t]
  }
  targets = [t for t in usable if wanted[t]]
  if not targets:
    raise ValueError("no target attribute is reliable with a usable positive rate")

  wc = w_candidates(g, pop["w"], settings)
  sc = {t: s_candidates(g, pop, t, settings) for t in targets}
  ifg = {t: interfacegan_edit(g, pop, t, names[t]) for t in targets}
  cands = _unique(wc["GANSpace"] + wc["SeFa"] + [e for t in targets for e in sc[t]])
  a = float(settings.select_alpha)
  sel_job = ad.make_job(
    workdir,
    "ad_select",
    g,
    attribute_fn,
    range(settings.select_seed, settings.select_seed + settings.num_select),
    cands,
    [-a, a],
    settings.psi,
    settings.images_per_shard,
    {"settings": settings.job_spec()},
  )
  log(
    f"selection: {len(cands)} candidate edits x 2 signs on {settings.num_select} images "
    f"({ad.num_renders(sel_job)} renders)"
  )
  base, edited = ad.run_and_read(sel_job, g, cands, attribute_fn, batch_size, mk(ad.num_renders(sel_job), "select"))
  col = {e.name: j for j, e in enumerate(cands)}
  chosen = {}
  for t in targets:
    theta_top = sc[t][0]
    chosen[t] = {
      "S best": _best(sc[t], base, edited, col, t, sd),
      "S theta-top": (theta_top, None),
      "InterFaceGAN": (ifg[t], None),
      "GANSpace": _best(wc["GANSpace"], base, edited, col, t, sd),
      "SeFa": _best(wc["SeFa"], base, edited, col, t, sd),
    }
  evals = _unique([e for t in targets for e, _ in chosen[t].values()])
  ev_job = ad.make_job(
    workdir,
    "ad_eval",
    g,
    attribute_fn,
    range(settings.eval_seed, settings.eval_seed + settings.num_eval),
    evals,
    settings.alphas,
    settings.psi,
    settings.images_per_shard,
    {"settings": settings.job_spec()},
  )
  log(
    f"evaluation: {len(evals)} edits x {len(settings.alphas)} strengths on {settings.num_eval} images "
    f"({ad.num_renders(ev_job)} renders)"
  )
  base, edited = ad.run_and_read(ev_job, g, evals, attribute_fn, batch_size, mk(ad.num_renders(ev_job), "evaluate"))
  col = {e.name: j for j, e in enumerate(evals)}
  rows = []
  for t in targets:
    for method in METHODS:
      e, score = chosen[t][method]
      r = ad.evaluate(
        base, edited[:, [col[e.name]]], [e], [t], settings.alphas, sd, names, settings.matches[0], others=reliable
      )[0]
      r.update(method=method, selection_target_change=score)
      rows.append(r)
  return {
    "rows": rows,
    "targets": [names[t] for t in targets],
    "skipped": skipped,
    "others": [n for n, r in zip(names, reliable) if r],
    "logit_std": dict(zip(names, sd.tolist())),
    "positive_rate": dict(zip(names, rate.tolist())),
    "settings": dataclasses.asdict(settings),
    "num_candidates": {
      "S (per attribute)": settings.s_candidates,
      "GANSpace": len(wc["GANSpace"]),
      "SeFa": len(wc["SeFa"]),
    },
  }


# ----------------------------------------------------------------------------- tables


def summary_table(result, x_star, key="mean_ad") -> str:
  """Markdown: attribute x method, `key` at target change x_star (interpolated); lowest in bold."""
  head = "| attribute | " + " | ".join(METHODS) + " | lowest |"
  label = key.replace("_ad", "-AD")
  lines = [
    f"{label} at target change {x_star:g} σ (n/a: the edit never got there; in brackets the largest "
    "target change it reached)",
    "",
    head,
    "|---" * (len(METHODS) + 2) + "|",
  ]
  wins = dict.fromkeys(METHODS, 0)
  for target in result["targets"]:
    rows = {r["method"]: r["summary"] for r in result["rows"] if r["target"] == target}
    vals = {m: ad.at_target(s["alphas"], s["target_change"], s[key], x_star)[0] for m, s in rows.items()}
    finite = {m: v for m, v in vals.items() if np.isfinite(v)}
    low = min(finite, key=finite.get) if finite else None
    if low:
      wins[low] += 1
    cells = []
    for m in METHODS:
      c = f"{vals[m]:.3f}" if np.isfinite(vals[m]) else f"n/a ({rows[m]['max_target_change']:.2f})"
      cells.append(f"**{c}**" if m == low else c)
    lines.append(f"| {target} | " + " | ".join(cells) + f" | {low or '-'} |")
  lines += ["", f"lowest {label} per method: " + ", ".join(f"{m} {n}" for m, n in wins.items())]
  return "\n".join(lines)


def pairwise_table(result, x_star, key="mean_ad", s_method="S best") -> str:
  """Markdown: `s_method` against each other method, attribute by attribute, at target change x_star.

  SE: standard errors over images of both values, interpolated like the values and combined
  as if independent (the images are shared, so this is conservative)."""
  label = key.replace("_ad", "-AD")
  lines = [
    f"{s_method} vs each method, {label} at target change {x_star:g} σ (counts of attributes)",
    "",
    f"| method | both reach it | {s_method} lower | of which by > 2 SE | method lower | of which by > 2 SE "
    f"| equal (same edit) | only {s_method} reaches it | only the method reaches it | neither |",
    "|---" * 10 + "|",
  ]
  value = lambda s, k=key: ad.at_target(s["alphas"], s["target_change"], s[k], x_star)[0]
  for m in METHODS:
    if m == s_method:
      continue
    c = [0] * 9
    for target in result["targets"]:
      rows = {r["method"]: r["summary"] for r in result["rows"] if r["target"] == target}
      a, b = value(rows[s_method]), value(rows[m])
      if np.isfinite(a) and np.isfinite(b):
        se = np.hypot(value(rows[s_method], key + "_sem"), value(rows[m], key + "_sem"))
        c[0] += 1
        k = 1 if a < b else 3 if b < a else 5
        c[k] += 1
        c[k + 1] += int(k < 5 and abs(a - b) > 2 * se)
      else:
        c[6 if np.isfinite(a) else 7 if np.isfinite(b) else 8] += 1
    lines.append(f"| {m} | " + " | ".join(str(v) for v in c) + " |")
  return "\n".join(lines)


def edits_table(result) -> str:
  """Markdown: which edit every method chose per attribute, with its selection score."""
  lines = [
    "| attribute | method | edit | selection target change (σ) | max target change (σ) |",
    "|---|---|---|---|---|",
  ]
  for r in result["rows"]:
    sel = r["selection_target_change"]
    lines.append(
      f"| {r['target']} | {r['method']} | {r['edit']} | {'-' if sel is None else f'{sel:.2f}'} | "
      f"{r['summary']['max_target_change']:.2f} |"
    )
  return "\n".join(lines)


def write_outputs(outdir, result, timing=None):
  """comparison.json, comparison.md, ad.md / ad.json and ad_<attribute>.png (curves of the 5 methods)."""
  out = pathlib.Path(outdir)
  rows = [dict(r, edit=f"{r['method']}: {r['edit']}") for r in result["rows"]]
  matches = result["settings"]["matches"]
  pngs = ad.write_outputs(out, rows, matches[0], result["settings"])
  tables = [
    t
    for x in matches
    for key in ("mean_ad", "max_ad")
    for t in (summary_table(result, x, key), pairwise_table(result, x, key))
  ]
  md = "\n\n".join(
    tables
    + [
      edits_table(result),
      "Skipped targets: " + (", ".join(f"{k} ({v})" for k, v in result["skipped"].items()) or "none"),
    ]
  )
  jobs.atomic_write_text(out / "comparison.md", md + "\n")
  jobs.atomic_write_json(out / "comparison.json", dict(result, timing=timing or {}, plots=pngs))
  return md
