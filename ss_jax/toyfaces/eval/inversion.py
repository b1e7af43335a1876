"""Real-image inversion measured on ToyFaces: reconstruction and edit quality per method.

The StyleSpace paper's question for real images (reconstruction versus
editability of codes found by optimisation in W, W+ or S, or by an encoder) asked
in the ToyFaces world, where the "real" images are renders with exact attribute
vectors, so the true edit of every image is known (change the attribute,
re-render).

Image sets (render seeds; each image depends on its seed only):
  HELDOUT_SEED0   = 40_000_000  the images inverted. Never seen by the GAN (trained on
                    seeds >= 1e9), the helper models (0.. and 5e6.., held out 1e7..), the
                    quality report (2e7.., 3e7..) or the encoder (trained on generated
                    images only; its export evaluates on these same renders, never trains).
  REFERENCE_SEED0 = 41_000_000  fresh renders: the reference set of the Fréchet distances.
  FLOOR_SEED0     = 42_000_000  more fresh renders: the renders-vs-renders floor at the
                    size of each measured set (disjoint sets of that size from here on).

Methods (`METHODS`), all ending in flat S so the same channel edit applies to each:
  "w", "wplus", "s"  ss_jax.inversion.optimise.invert from the average code, MSE + LPIPS.
  "encoder"          ss_jax.inversion.encoder's S prediction, no optimisation.
  "hybrid"           the encoder's S as the start of a (shorter) optimisation in S.

Edits (`edit_plan`): for each attribute, exemplars are the generator samples of a
seed bank with the highest classifier logit; attribute_channels.find_channels
ranks channels by theta and gives each its sign (sign of z_mean: the direction
that increases the attribute). Every image is edited *towards the opposite of its
true state* ("toggle"): +alpha population stds along the increasing direction
where the render lacks the attribute (binary 0, continuous below the middle of its
range, i.e. classifier target 0), -alpha where it has it. The ground-truth edit
re-renders the attribute vector with that attribute toggled (binary 1 - v,
continuous moved by half its range to the other side).

Code typicality: `code_rms_z`, the RMS over conv channels of each code's distance
from the population mean in stds (about 1 for generator samples).

Scores per edited image, realism (Fréchet distances): ss_jax.toyfaces.eval.edit_scores.

Everything here is pure except for running the models passed in (no file I/O).
"""

import dataclasses
from typing import Callable, Optional

import numpy as np

from ss_jax.stylespace import attribute_channels as ac
from ss_jax.runtime import images as images_lib
from ss_jax.stylespace import manipulate, channels as stylespace
from ss_jax.toyfaces import attributes as attr_lib
from ss_jax.toyfaces import render as render_lib

HELDOUT_SEED0 = 40_000_000
REFERENCE_SEED0 = 41_000_000
FLOOR_SEED0 = 42_000_000

METHODS = ("w", "wplus", "s", "encoder", "hybrid")
METHOD_LABELS = {
  "w": "optimise W",
  "wplus": "optimise W+",
  "s": "optimise S",
  "encoder": "encoder (S)",
  "hybrid": "encoder + optimise S",
}
SHORT_LABELS = {"w": "W", "wplus": "W+", "s": "S", "encoder": "enc", "hybrid": "hyb"}
GROUND_TRUTH = "ground truth"
# Chosen on the shipped models with `experiments.inversion_table --pilot` (top-3-channel edits of
# generated samples, docs/inversion/pilot.md); all four are read with held-out AUC >= 0.998.
# Hair colour, hair length and mouth open respond most (the classifier's decision flips in 72-95%
# of the edits); hat (27%) is kept as the visible accessory edit, a hard case. Glasses, earrings
# and closed eyes barely respond to their top channels in this small GAN.
DEFAULT_ATTRIBUTES = ("hair_color", "hair_length", "mouth_open", "hat")
DEFAULT_NUM_CHANNELS = 3
DEFAULT_ALPHA = 10.0


# ---------------------------------------------------------------- images


def heldout_renders(num, resolution=64, seed0=HELDOUT_SEED0):
  """Renders of seeds seed0 .. seed0 + num - 1.

  Returns:
    images float32 (num, R, R, 3) in [-1, 1], labels uint8 (num, R, R) (exact
    part labels), attrs float32 (num, A).
  """
  if num < 1:
    raise ValueError(f"num must be >= 1, got {num}")
  x, labels, attrs = render_lib.render(np.arange(seed0, seed0 + num), resolution)
  return images_lib.from_uint8(x), labels, attrs


# ---------------------------------------------------------------- reconstruction


def reconstruction_errors(targets, reconstructions, perceptual: Optional[Callable] = None, batch_size=64):
  """Per-image reconstruction errors.

  Args:
    targets, reconstructions: float (N, H, W, 3) in [-1, 1].
    perceptual: optional (x, y) -> (N,) distance (e.g. ss_jax.inversion.lpips.load_lpips("alex")),
      applied in batches of batch_size.

  Returns:
    dict(mse=(N,) float64 mean squared error over pixels and channels in [-1, 1]
    units (as inversion.Losses.mse), perceptual=(N,) float64 or None).
  """
  x = np.asarray(targets, np.float32)
  y = np.asarray(reconstructions, np.float32)
  if x.shape != y.shape or x.ndim != 4:
    raise ValueError(f"targets and reconstructions must be equal (N, H, W, C), got {x.shape} and {y.shape}")
  mse = np.mean(np.square(x.astype(np.float64) - y), axis=(1, 2, 3))
  d = None
  if perceptual is not None:
    d = np.concatenate(
      [
        np.asarray(perceptual(y[i : i + batch_size], x[i : i + batch_size]), np.float64)
        for i in range(0, len(x), batch_size)
      ]
    )
  return {"mse": mse, "perceptual": d}


def code_rms_z(styles, mean, std, layout):
  """(N,) float64 RMS over the conv channels of (s - mean) / std: how typical each S code is.

  A generator sample scores about 1 on average (by definition of mean and std);
  codes that optimisation pushed off the generator's distribution score more,
  an encoder that regresses to the mean less. Channels with std 0 are skipped.
  """
  std = np.asarray(std, np.float64)
  keep = stylespace.kind_mask(layout, False) & (std > 0)
  z = (np.asarray(styles, np.float64)[:, keep] - np.asarray(mean, np.float64)[keep]) / std[keep]
  return np.sqrt(np.mean(np.square(z), axis=1))


# ---------------------------------------------------------------- inversion methods


def check_methods(methods):
  """Tuple of method names in METHODS order; ValueError on unknown ones or an empty list."""
  methods = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
  bad = [m for m in methods if m not in METHODS]
  if bad or not methods:
    raise ValueError(f"unknown method(s) {bad or methods}; choose from {', '.join(METHODS)}")
  return tuple(m for m in METHODS if m in methods)


def invert_method(
  g,
  method,
  targets,
  *,
  steps,
  hybrid_steps,
  lr=0.1,
  perceptual=None,
  encoder=None,
  spread=None,
  image_ids=None,
  chunk_size=None,
  progress=None,
):
  """Codes of `targets` by one method, as flat S, and their renders.

  Args:
    g: Generator.
    method: one of METHODS.
    targets: float32 (N, H, W, 3) in [-1, 1].
    steps: optimisation steps of "w", "wplus", "s"; hybrid_steps: of "hybrid".
    lr: inversion.invert's peak learning rate.
    perceptual: (x, y) -> (N,) (LPIPS); loss = MSE + 1.0 * perceptual when given.
    encoder: object with encode(images) -> dict(s=(N, C), ...) for "encoder"/"hybrid".
    spread, image_ids, chunk_size, progress: passed to inversion.invert.

  Returns:
    dict(styles (N, C) float32, images (N, H, W, 3) float32).
  """
  from ss_jax.inversion import optimise as inversion

  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
  targets = np.asarray(targets, np.float32)
  losses = inversion.Losses(mse=1.0, perceptual=1.0 if perceptual is not None else 0.0)
  init = None
  if method in ("encoder", "hybrid"):
    if encoder is None:
      raise ValueError(f"method {method!r} needs an encoder")
    init = np.asarray(encoder.encode(targets)["s"], np.float32)
    if method == "encoder":
      return {"styles": init, "images": manipulate.render(g, init, batch_size=64)}
  space = "s" if method == "hybrid" else method
  n = steps if method != "hybrid" else hybrid_steps
  res = inversion.invert(
    g,
    targets,
    space,
    steps=n,
    lr=lr,
    losses=losses,
    init=init,
    perceptual=perceptual,
    spread=spread,
    image_ids=image_ids,
    chunk_size=chunk_size,
    progress=progress,
  )
  return {"styles": np.asarray(res.styles, np.float32), "images": np.asarray(res.images, np.float32)}


# ---------------------------------------------------------------- edit plan


def attribute_indices(names):
  """'hat,glasses' or a list of names -> tuple of attribute indices (ValueError on unknown names)."""
  names = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
  bad = [n for n in names if n not in attr_lib.ATTRIBUTE_INDEX]
  if bad or not names:
    raise ValueError(f"unknown attribute(s) {bad or names}; known: {', '.join(attr_lib.ATTRIBUTE_NAMES)}")
  return tuple(attr_lib.ATTRIBUTE_INDEX[n] for n in names)


@dataclasses.dataclass(frozen=True)
class Edit:
  """One attribute's channel edit (plain data).

  attribute: index into attributes.ATTRIBUTE_NAMES; name: its name.
  channels: flat S indices; names: 'L_C'; signs: +1/-1 per channel (the
  direction that increases the attribute); theta: their relevance.
  parts: part names of the attribute's region.
  """

  attribute: int
  name: str
  channels: tuple
  names: tuple
  signs: tuple
  theta: tuple
  parts: tuple

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d):
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def edit_plan(bank_styles, bank_logits, attributes, mean, std, layout, num_exemplars=50, num_channels=1):
  """Detect the edit channels of each attribute from a bank of generator samples.

  Args:
    bank_styles: (B, C) flat S of the bank; bank_logits: (B, A) classifier logits.
    attributes: attribute indices.
    mean, std: (C,) population statistics of S.
    num_exemplars: exemplars per attribute (highest logits of the bank).
    num_channels: top channels edited together.

  Returns:
    list of Edit.
  """
  plan = []
  for a in attributes:
    idx = ac.top_by_attribute(bank_logits, int(a), min(num_exemplars, len(bank_logits)))
    res = ac.find_channels(np.asarray(bank_styles)[idx], mean, std, layout)
    top = res["ranking"][:num_channels]
    signs = np.where(res["z_mean"][top] >= 0, 1, -1)
    plan.append(
      Edit(
        int(a),
        attr_lib.ATTRIBUTE_NAMES[a],
        tuple(int(c) for c in top),
        tuple(stylespace.names_of(layout, top)),
        tuple(int(s) for s in signs),
        tuple(float(res["theta"][c]) for c in top),
        tuple(attr_lib.ATTRIBUTES[a].parts),
      )
    )
  return plan


def present(attrs, attribute):
  """bool (N,): the attribute is present / above the middle of its range (the classifier's target)."""
  return attr_lib.attribute_targets(attrs)[:, attribute] > 0.5


def toggle_directions(attrs, attribute):
  """(N,) float32: +1 where the render lacks the attribute (edit towards it), -1 where it has it."""
  return np.where(present(attrs, attribute), -1.0, 1.0).astype(np.float32)


def toggled_attributes(attrs, attribute):
  """Attribute vectors (N, A) with one attribute toggled: binary 1 - v, continuous moved by half its range."""
  attrs = np.array(attrs, np.float32)
  a = attr_lib.ATTRIBUTES[attribute]
  v = attrs[:, attribute]
  if a.binary:
    attrs[:, attribute] = 1.0 - (v > 0.5)
  else:
    half = 0.5 * (a.high - a.low)
    attrs[:, attribute] = np.where(present(attrs, attribute), v - half, v + half)
  return attrs


def edit_styles(styles, edit: Edit, std, alpha, directions):
  """Flat S (N, C) -> (N, C): s_c += directions_i * sign_c * alpha * std_c on the edit's channels."""
  s = np.array(styles, np.float32)
  directions = np.asarray(directions, np.float32).reshape(-1)
  if directions.shape != (len(s),):
    raise ValueError(f"directions must have {len(s)} entries, got {directions.shape}")
  std = np.asarray(std, np.float64)
  for c, sign in zip(edit.channels, edit.signs):
    s[:, c] += (directions * sign * alpha * std[c]).astype(np.float32)
  return s
