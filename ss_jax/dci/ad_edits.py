"""The edits that attribute dependency (ss_jax.dci.attribute_dependency) measures, as flat S directions.

An `Edit` is a flat S direction (`Edit.direction`, (C,)) for strength 1; strength alpha renders
S + alpha * direction. A channel edit (`channel_edit`) moves channel c by alpha population stds
(sigma_c); a W / W+ direction u (`w_edit`) moves w by alpha stds of the population's w along u
(`direction_std`; S changes exactly by alpha * sigma_u * directions.w_to_s(u), since styles are
affine in w). `make_edits` builds the user's edits (channel groups, direction .npy files read by
`load_direction`, InterFaceGAN); `edits_fingerprint` identifies them in a job's settings.
"""

import dataclasses
import hashlib
import pathlib

import numpy as np

from ss_jax.stylespace import directions, manipulate, channels as stylespace


@dataclasses.dataclass(frozen=True, eq=False)
class Edit:
  """One edit: S + alpha * direction.

  Attributes:
    name: label, e.g. 'S 3_43', 'InterFaceGAN', 'GANSpace pc2 rows 0-3'.
    space: 's', 'w' or 'wplus' (where the edit was defined).
    direction: (C,) float32 flat S change per unit strength.
    meta: JSON-able description (channels, row range, sigma, component index, ...).
  """

  name: str
  space: str
  direction: np.ndarray
  meta: dict = dataclasses.field(default_factory=dict)


def channel_edit(layout, channels, std, sign=1.0, name=None) -> Edit:
  """Channels ('L_C' names or flat indices) moved together by sign * sigma_c per unit strength."""
  idx = manipulate.resolve_channels(layout, channels)
  d = manipulate.direction(layout, idx, std) * np.float32(np.sign(sign) or 1.0)
  names = stylespace.names_of(layout, idx)
  name = name or "S " + "+".join(names) + (" (-)" if sign < 0 else "")
  return Edit(
    name, "s", d, {"channels": names, "sign": float(np.sign(sign) or 1.0), "sigma": [float(std[i]) for i in idx]}
  )


def direction_std(w, u) -> float:
  """Population std of the codes projected on the unit vector along u.

  w: (N, D) population codes; u: (D,), or (R, D) for a W+ direction, whose population codes
  are w repeated on every row (projection w . sum_r u_r / |u|).
  """
  u = np.asarray(u, np.float64)
  v = u.sum(0) if u.ndim == 2 else u
  return float((np.asarray(w, np.float64) @ (v / np.linalg.norm(u))).std())


def w_edit(g, u, sigma, rows=None, name="W direction", space=None, meta=None) -> Edit:
  """W direction u (w_dim,) on `rows` (None: all rows = W) or W+ direction (num_ws, w_dim);
  the unit vector along u moved sigma per unit strength."""
  u = np.asarray(u, np.float64)
  d = directions.w_to_s(g, u / np.linalg.norm(u) * float(sigma), rows)
  space = space or ("w" if rows is None or len(rows) == g.config.num_ws else "wplus")
  return Edit(
    name, space, d, dict(meta or {}, sigma=float(sigma), rows="all" if rows is None else [int(r) for r in rows])
  )


def make_edits(g, pop, target, channel_groups=(), direction_paths=(), rows=None, interfacegan=False):
  """Edits given by the user: S channel groups, W / W+ direction files, InterFaceGAN for `target`.

  Args:
    pop: population dict (w, s, logits) for the stds and the InterFaceGAN fit.
    channel_groups: e.g. ['3_43', '6_113+6_114']: each group moved together by +sigma_c.
    direction_paths: .npy files, (w_dim,) (applied on `rows`) or (num_ws, w_dim).
    rows: w rows for the (w_dim,) directions (None: all).
  """
  std = pop["s"].std(0)
  edits = [channel_edit(g.layout, grp.split("+"), std) for grp in channel_groups]
  for path in direction_paths:
    u = load_direction(path, g.config)
    r = rows if u.ndim == 1 else None
    edits.append(
      w_edit(
        g,
        u,
        direction_std(pop["w"], u),
        r,
        f"W {pathlib.Path(path).stem}",
        space="wplus" if u.ndim == 2 else None,
        meta={"file": str(path)},
      )
    )
  if interfacegan:
    fit = directions.interfacegan(pop["w"], pop["logits"][:, int(target)] > 0)
    edits.append(
      w_edit(
        g,
        fit["direction"],
        direction_std(pop["w"], fit["direction"]),
        None,
        "InterFaceGAN",
        meta={k: fit[k] for k in ("train_accuracy", "holdout_accuracy", "l2")},
      )
    )
  if not edits:
    raise ValueError("no edits given: pass channels, direction files or interfacegan")
  return edits


def edits_fingerprint(edits) -> str:
  h = hashlib.sha1()
  for e in edits:
    h.update(e.name.encode())
    h.update(np.ascontiguousarray(np.asarray(e.direction, np.float32)).tobytes())


def load_direction(path, cfg):
  """A W (w_dim,) or W+ (num_ws, w_dim) direction from a .npy (no pickles)."""
  try:
    u = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable numeric .npy ({e})") from e
  if u.shape not in ((cfg.w_dim,), (cfg.num_ws, cfg.w_dim)) or not np.all(np.isfinite(u)):
    raise ValueError(
      f"{path}: a direction must be finite with shape ({cfg.w_dim},) or ({cfg.num_ws}, {cfg.w_dim}), got {u.shape}"
    )
  return u.astype(np.float64)
