"""The summary of an attribute-channel check (ss_jax.dci.attribute_bank): rows, table, curves, files.

`summary_row` turns one attribute's finished check shard into a JSON row (rankings, detection
accuracy at the report sizes, edit scores against the random-channel baseline); `markdown_table`
and `mean_curves` summarise the rows; `write_outputs` writes attribute_channels.json / .md and
the curve PNGs. Definitions: ss_jax.stylespace.attribute_detection.
"""

import pathlib
from typing import Mapping, Sequence

import numpy as np

from ss_jax.runtime import jobs
from ss_jax.stylespace import attribute_channels as ac
from ss_jax.stylespace import attribute_detection as det
from ss_jax.stylespace import channels as stylespace


def _name(layout, c):
  return stylespace.name_of(layout, int(c)) if int(c) >= 0 else None


def _acc(sizes, acc, k):
  hit = np.flatnonzero(np.asarray(sizes) == k)
  return None if not len(hit) or np.isnan(acc[hit[0]]) else float(acc[hit[0]])


def summary_row(
  d: Mapping, name: str, layout, attribute_names, regions=None, report_sizes=(5, 10, 30), random=None
) -> dict:
  """JSON-ready summary of one attribute's shard (d: detect_attribute / check_attribute arrays).

  random: edit_metrics (R, S) of the random-channel baseline for this attribute (direction +1),
  reported at the strength of the best edit as mean |target| and mean leak_max over channels.
  """
  sizes = d["sizes"]
  num_local = int(d["num_local"]) if int(d["ref_local"]) >= 0 else None  # None: no restriction asked
  acc_local = d["acc_local"] if num_local is not None else np.full(len(sizes), np.nan)
  row = {
    "attribute": name,
    "region": list((regions or {}).get(name) or []),
    "num_local": num_local,
    "reference_all": _name(layout, d["ref_all"]),
    "reference_local": _name(layout, d["ref_local"]),
    "pool_top_all": _name(layout, d["pool_top_all"]),
    "top_all": [[_name(layout, c), float(t)] for c, t in zip(d["top_all"], d["theta_all"])],
    "top_local": [_name(layout, c) for c in d["top_local"] if c >= 0],
    "curve": {
      "sizes": sizes.tolist(),
      "all": d["acc_all"].tolist(),
      "local": [None if np.isnan(a) else float(a) for a in acc_local],
    },
    "accuracy_all": {str(k): _acc(sizes, d["acc_all"], k) for k in report_sizes},
    "accuracy_local": {str(k): _acc(sizes, acc_local, k) for k in report_sizes},
  }
  if "edit_target" not in d:
    return row
  chans, alphas = d["edit_channels"], d["alphas"]
  edits = []
  for i, c in enumerate(chans):
    for j, a in enumerate(alphas):
      edits.append(
        {
          "channel": _name(layout, c),
          "alpha": float(a * d["edit_directions"][i]),
          **{k: float(d[f"edit_{k}"][i, j]) for k in ("target", "flips", "leak_max", "leak_mean")},
          "largest_leak": [attribute_names[int(d["edit_leak_attr"][i, j])], float(d["edit_leak_attr_std"][i, j])],
        }
      )
  row["edits"] = edits
  metrics = {k: d[f"edit_{k}"] for k in ("target", "flips", "leak_max")}
  best = det.single_channel_verdict(metrics)
  row["single_channel"] = best is not None
  if best is None:  # report the strongest edit instead
    best = np.unravel_index(int(np.argmax(d["edit_target"])), d["edit_target"].shape)
  row["best_edit"] = edits[int(best[0]) * len(alphas) + int(best[1])]
  if random is not None:
    j = int(best[1])
    row["random_channels"] = {
      "alpha": float(alphas[j]),
      "count": len(random["target"]),
      "abs_target": float(np.abs(random["target"][:, j]).mean()),
      "leak_max": float(random["leak_max"][:, j].mean()),
    }
  return row


def _fmt(x, digits=2):
  return "–" if x is None else f"{x:.{digits}f}"


def markdown_table(rows: Sequence[Mapping], report_sizes=(5, 10, 30)) -> str:
  """One line per attribute: references, accuracies with/without restriction, best edit, verdict."""
  ks = " / ".join(str(k) for k in report_sizes)
  head = (
    f"| attribute | region (local channels) | reference, all | acc. k={ks}, all | reference, local | "
    f"acc. k={ks}, local |"
  )
  edits = any("best_edit" in r for r in rows)
  if edits:
    head += (
      " best edit (channel, α) | Δtarget (σ) | flips | max leak (σ) | largest other |"
      " random channels, same α: \\|Δtarget\\| / max leak | single channel? |"
    )
  lines = [head, "|" + "---|" * head.count(" |")]
  for r in rows:
    acc = lambda key: " / ".join(_fmt(r[key][str(k)]) for k in report_sizes)
    region = "+".join(r["region"]) if r["region"] else "global"
    region += f" ({r['num_local']})" if r["num_local"] is not None else ""
    line = (
      f"| {r['attribute']} | {region} | {r['reference_all']} | {acc('accuracy_all')} | "
      f"{r['reference_local'] or '–'} | {acc('accuracy_local')} |"
    )
    if edits:
      e, b = r["best_edit"], r.get("random_channels")
      rnd = f"{b['abs_target']:.2f} / {b['leak_max']:.2f}" if b else "–"
      line += (
        f" {e['channel']}, {e['alpha']:+g} | {e['target']:.2f} | {_fmt(e['flips'])} | "
        f"{e['leak_max']:.2f} | {e['largest_leak'][0]} {e['largest_leak'][1]:.2f} | {rnd} | "
        f"{'**yes**' if r['single_channel'] else 'no'} |"
      )
    lines.append(line)
  return "\n".join(lines)


def mean_curves(rows: Sequence[Mapping]):
  """(sizes, (2, K) mean accuracy over attributes having both curves: all, local; count)."""
  both = [r for r in rows if all(a is not None for a in r["curve"]["local"])]
  if not both:
    return None, None, 0
  acc = np.array([[r["curve"]["all"], r["curve"]["local"]] for r in both], np.float64)
  return np.array(both[0]["curve"]["sizes"]), acc.mean(0), len(both)


def write_outputs(out, result):
  """attribute_channels.json (rows, mean curves, settings), attribute_channels.md, curve PNGs.

  result: from run().
  """
  from ss_jax.runtime import images

  out, rows = pathlib.Path(out), result["rows"]
  sizes, mean_acc, count = result["curves"]
  table = markdown_table(rows)
  summary = {
    "attributes": rows,
    "table": table,
    "settings": result["settings"],
    "single_channel": [r["attribute"] for r in rows if r.get("single_channel")],
    "criterion": {
      "min_target_std": det.MIN_TARGET_STD,
      "min_flip_rate": det.MIN_FLIP_RATE,
      "max_leak_ratio": det.MAX_LEAK_RATIO,
    },
    "mean_curve": None
    if sizes is None
    else {"sizes": sizes.tolist(), "all": mean_acc[0].tolist(), "local": mean_acc[1].tolist(), "attributes": count},
  }
  jobs.atomic_write_json(out / "attribute_channels.json", summary)
  jobs.atomic_write_text(out / "attribute_channels.md", table + "\n")
  labels = ["all conv channels", "locally-active channels of the region"]
  for r in rows:
    c = r["curve"]
    acc = np.array([c["all"], [np.nan if a is None else a for a in c["local"]]], np.float64)
    images.save_png(
      out / f"curve_{r['attribute']}.png",
      ac.plot_curve(c["sizes"], acc, f"{r['attribute']}: top channel == independent reference", labels=labels),
    )
  if sizes is not None:
    images.save_png(
      out / "accuracy_curve.png",
      ac.plot_curve(sizes, mean_acc, f"mean detection accuracy over {count} attributes with a region", labels=labels),
    )
  n = len(summary["single_channel"])
  print(f"{table}\n\nsingle channel controls {n} of {len(rows)} attribute(s): {', '.join(summary['single_channel'])}")
  print(f"wrote attribute_channels.json/.md and curve PNGs to {out}")
