"""DCI evaluation of sampled codes and its outputs: per-space scores, code names and groups,
importance heat maps (PNG) and results.json."""

import json
import pathlib
import time
from typing import Mapping, Sequence

import numpy as np

from ss_jax.dci import controls as dci_controls
from ss_jax.dci import metric as dci_lib
from ss_jax.dci.sampling import SPACES, space_codes
from ss_jax.runtime import images as images_lib
from ss_jax.runtime import jobs
from ss_jax.stylespace import channels as stylespace
from ss_jax.stylespace import report

MAX_FULL_CODES = 512  # heat maps draw every code up to this many, else groups + top-k


TOP_K_CODES = 64


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


def evaluate(
  codes_job: jobs.ShardedJob,
  logits,
  spaces: Sequence[str],
  num_ws: int,
  method="lasso",
  seed=0,
  attribute_names=None,
  log=None,
  layout=None,
  control_seed=0,
  **dci_kwargs,
) -> dict:
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
      log(
        f"DCI {SPACES[space]} ({codes.shape[1]} codes, {method}): D={r['D']:.3f} C={r['C']:.3f} "
        f"I={r['I']:.3f} in {r['seconds']:.1f}s"
      )
    del codes
  return results


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
    return {f"importance_{space}": (img, f"full importance matrix: rows = kept attributes, columns = all {dim} codes")}
  out = {}
  group, glabels = code_groups(space, layout, num_ws, w_dim, dim)
  agg = np.zeros((len(glabels), imp.shape[1]))
  np.add.at(agg, group, imp)
  what = "w row" if space == "wplus" else "style layer"
  out[f"importance_{space}"] = (
    importance_heatmap_png(agg.T, names, glabels, f"{label}: importance summed per {what}"),
    f"importance summed per {what}: rows = kept attributes, columns = {len(glabels)} {what}s",
  )
  top = np.sort(np.argsort(-imp.sum(1), kind="stable")[:TOP_K_CODES])
  out[f"importance_{space}_top"] = (
    importance_heatmap_png(
      imp[top].T, names, [cnames[i] for i in top], f"{label}: top {len(top)} codes by total importance"
    ),
    f"the {len(top)} codes with the largest total importance (columns, in code order), rows = kept attributes",
  )
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
      "top_codes": [[cnames[i], float(imp[i, j])] for i in order if imp[i, j] > 0],
    }
  return {
    "D": float(result["D"]),
    "C": float(result["C"]),
    "I": float(result["I"]),
    "num_codes": int(imp.shape[0]),
    "kept_attributes": [str(a) for a in result["kept_attributes"]],
    "seconds": float(result.get("seconds", 0.0)),
    "per_attribute": per_attr,
  }


def write_outputs(
  outdir, results: Mapping, layout, num_ws: int, w_dim: int, settings=None, timing=None, attribute_names=None
) -> dict:
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
  jobs.atomic_write_json(
    out / "dci.json",
    {
      "table": table,
      "spaces": spaces,
      "settings": settings or {},
      "timing": timing or {},
      "heatmaps": drawn,
      "notes": [
        "D, C: disentanglement_lib formulas (importance-weighted); I: mean test accuracy.",
        "W+ = w broadcast to all w rows (num_ws identical copies of every w dimension).",
        "S: all style channels in generator order, toRGB included; codes named layer_channel.",
      ],
    },
  )
  return drawn


def load_results(outdir) -> dict:
  """dci.json of a finished run."""
  return json.loads((pathlib.Path(outdir) / "dci.json").read_text())


def write_and_report(out, results, g, settings, timing, names, what):
  """write_outputs for generator g, then the summary the dci binary prints (tables, files, timing)."""
  drawn = write_outputs(out, results, g.layout, g.config.num_ws, g.config.w_dim, settings, timing, names)
  print(f"\nDCI, N={settings['num_samples']}, method={settings['method']}:\n{(out / 'dci.md').read_text()}")
  print(f"wrote dci.json, dci.md, importance.npz and {len(drawn)} heat maps to {out}")
  if timing["seconds_per_10k_samples"] is None:
    print("sampling: all shards were already done (no timing)")
  else:
    print(
      f"sampling: {timing['samples_computed']} samples in {timing['sampling_seconds']:.1f}s = "
      f"{timing['seconds_per_10k_samples']:.1f} s per 10k samples ({what})"
    )


def fit_and_report(
  out,
  codes_job: jobs.ShardedJob,
  logits,
  g,
  spaces: Sequence[str],
  method,
  dci_seed,
  names,
  source: Mapping,
  sampling_seconds: float,
  computed: int,
  what: str,
  control_seed=0,
) -> dict:
  """The dci binary's last step (process 0): `evaluate` every space, then `write_and_report`.

  source: settings entries naming where the attributes came from; sampling_seconds, computed:
  this run's sampling time and samples (for the timing); what: the sampled data (summary line);
  control_seed: of the control spaces' random matrices. Returns evaluate's results.
  """
  results = evaluate(
    codes_job,
    logits,
    spaces,
    g.config.num_ws,
    method,
    dci_seed,
    names,
    log=print,
    layout=g.layout,
    control_seed=control_seed,
  )
  settings = dict(
    codes_job.spec,
    method=method,
    dci_seed=dci_seed,
    spaces=spaces,
    control_seed=control_seed,
    attribute_names=names,
    **source,
  )
  per_10k = sampling_seconds / computed * 10_000 if computed else None
  timing = {
    "sampling_seconds": sampling_seconds,
    "samples_computed": computed,
    "seconds_per_10k_samples": per_10k,
    "dci_seconds": {k: r["seconds"] for k, r in results.items()},
  }
  write_and_report(pathlib.Path(out), results, g, settings, timing, names, what)
  return results
