"""ToyFaces attribute table, sampling and classifier targets.

An attribute vector (float32 [A]) fully determines a ToyFaces picture: the
renderer draws nothing random of its own. Continuous attributes are uniform
on their documented range; binary ones are Bernoulli with the documented
prevalence (all in [0.2, 0.4], so DCI and attribute classifiers always see
both positives and negatives). Attributes are independent by construction.

`ATTRIBUTES` documents, for each attribute, which part classes (see
`parts.PART_NAMES`) it may change and whether its effect is local (confined
to those parts, so a ground-truth edit leaves every other pixel untouched)
or global (moves or recolours most of the picture).
"""

from typing import NamedTuple, Sequence, Union

import numpy as np


class Attribute(NamedTuple):
  """One row of the attribute table (plain data)."""

  name: str
  low: float  # Range of the raw value; binary attributes use [0, 1].
  high: float
  binary: bool
  prevalence: float  # P(value == 1) for binary ones; NaN for continuous.
  parts: tuple[str, ...]  # Part classes the attribute can change.
  local: bool  # True: pixels outside `parts` are unaffected by edits.
  doc: str


_NAN = float("nan")

ATTRIBUTES: tuple[Attribute, ...] = (
  # Local attributes.
  Attribute("eye_size", 0.0, 1.0, False, _NAN, ("eye",), True, "Eye width/height, small to large."),
  Attribute("eyes_closed", 0.0, 1.0, True, 0.2, ("eye",), True, "1: eyes drawn as closed lash arcs."),
  Attribute("iris_color", 0.0, 1.0, False, _NAN, ("eye",), True, "Iris colour: brown, hazel, green, blue, grey."),
  Attribute("eyebrow_thickness", 0.0, 1.0, False, _NAN, ("eyebrow",), True, "Eyebrow stroke thickness, thin to bushy."),
  Attribute(
    "eyebrow_angle", -1.0, 1.0, False, _NAN, ("eyebrow",), True, "Eyebrow tilt: -1 worried (inner ends up), +1 angry."
  ),
  Attribute("nose_size", 0.0, 1.0, False, _NAN, ("nose",), True, "Nose size, button to large."),
  Attribute("smile", -1.0, 1.0, False, _NAN, ("mouth",), True, "Mouth curvature: -1 frown, +1 broad smile."),
  Attribute("mouth_open", 0.0, 1.0, True, 0.35, ("mouth",), True, "1: open mouth showing teeth and tongue."),
  Attribute("lip_color", 0.0, 1.0, False, _NAN, ("mouth",), True, "Lip colour: pale pink, red, dark berry."),
  Attribute(
    "ear_size",
    0.0,
    1.0,
    False,
    _NAN,
    ("ear", "earring"),
    True,
    "Ear size; earrings hang from the lobe so they move too.",
  ),
  Attribute(
    "hair_color",
    0.0,
    1.0,
    False,
    _NAN,
    ("hair", "eyebrow"),
    True,
    "Hair (and eyebrow) colour: black, brown, auburn, blond, platinum.",
  ),
  Attribute(
    "hair_length", 0.0, 1.0, False, _NAN, ("hair",), True, "Length of the hair behind the head, short to shoulders."
  ),
  Attribute("hair_volume", 0.0, 1.0, False, _NAN, ("hair",), True, "How far the hair stands out around the head."),
  Attribute("bangs", 0.0, 1.0, True, 0.4, ("hair",), True, "1: a zig-zag fringe low on the forehead."),
  Attribute("glasses", 0.0, 1.0, True, 0.3, ("glasses",), True, "1: round glasses (frame only, lenses are clear)."),
  Attribute("hat", 0.0, 1.0, True, 0.2, ("hat",), True, "1: a hat with brim and band covering the top of the head."),
  Attribute("earrings", 0.0, 1.0, True, 0.3, ("earring",), True, "1: gold ball earrings below the ear lobes."),
  Attribute(
    "clothes_color", 0.0, 1.0, False, _NAN, ("clothes", "hat"), True, "Hue of the shirt; the hat uses the opposite hue."
  ),
  # Global attributes.
  Attribute("skin_tone", 0.0, 1.0, False, _NAN, ("skin", "ear", "nose", "neck"), False, "Skin colour, light to dark."),
  Attribute(
    "face_width",
    0.0,
    1.0,
    False,
    _NAN,
    ("skin", "ear", "eye", "eyebrow", "hair", "glasses", "earring", "neck"),
    False,
    "Face half-width; features spread with it.",
  ),
  Attribute("head_x", -1.0, 1.0, False, _NAN, ("all",), False, "Horizontal head shift (about +-2.6 px at 64 px)."),
  Attribute("head_y", -1.0, 1.0, False, _NAN, ("all",), False, "Vertical head shift (about +-1.8 px at 64 px)."),
  Attribute("head_roll", -1.0, 1.0, False, _NAN, ("all",), False, "In-plane head tilt, about +-11 degrees."),
  Attribute(
    "light_direction",
    -1.0,
    1.0,
    False,
    _NAN,
    ("all",),
    False,
    "Horizontal light gradient on everything but the background.",
  ),
  Attribute(
    "brightness", 0.0, 1.0, False, _NAN, ("all",), False, "Overall illumination of the figure (not the background)."
  ),
  Attribute("background_hue", 0.0, 1.0, False, _NAN, ("background",), False, "Hue of the flat pastel background."),
)

ATTRIBUTE_NAMES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES)
ATTRIBUTE_INDEX: dict[str, int] = {n: i for i, n in enumerate(ATTRIBUTE_NAMES)}
NUM_ATTRIBUTES = len(ATTRIBUTES)
BINARY = np.array([a.binary for a in ATTRIBUTES], dtype=bool)
LOCAL = np.array([a.local for a in ATTRIBUTES], dtype=bool)
LOW = np.array([a.low for a in ATTRIBUTES], dtype=np.float32)
HIGH = np.array([a.high for a in ATTRIBUTES], dtype=np.float32)
_PREVALENCE = np.array([a.prevalence if a.binary else 0.0 for a in ATTRIBUTES], dtype=np.float64)


def _rows_from_uniform(u: np.ndarray) -> np.ndarray:
  """Uniforms float [N, A] in [0, 1) -> attribute rows float32 [N, A]."""
  cont = LOW + u * (HIGH - LOW)
  return np.where(BINARY, u < _PREVALENCE, cont).astype(np.float32)


def _seed_uniforms(seeds: np.ndarray) -> np.ndarray:
  """Counter-based uniforms: float64 [N, A] from int seeds [N].

  splitmix64 of (seed, column): vectorised, and row i depends on seeds[i]
  only, so a face is reproducible from its seed in any batch.
  """
  x = seeds.astype(np.uint64)[:, None] * np.uint64(NUM_ATTRIBUTES) + np.arange(NUM_ATTRIBUTES, dtype=np.uint64)[None, :]
  x = x + np.uint64(0x9E3779B97F4A7C15)
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  x = x ^ (x >> np.uint64(31))
  return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def sample_attributes(
  rng_or_seeds: Union[np.random.Generator, Sequence[int], np.ndarray], n: int | None = None
) -> np.ndarray:
  """Draws attribute vectors.

  Args:
    rng_or_seeds: a `np.random.Generator` (then `n` rows are drawn from it),
      or an int array of non-negative seeds [N]: row i then depends only on
      seeds[i], so a face is reproducible from its seed in any batch.
    n: number of rows when a Generator is given (ignored for seeds, except
      that it must equal len(seeds) if given).

  Returns:
    float32 [N, A]; binary columns are exactly 0/1, continuous columns lie
    in [LOW, HIGH].
  """
  if isinstance(rng_or_seeds, np.random.Generator):
    if n is None:
      raise ValueError("n is required when sampling from a Generator.")
    return _rows_from_uniform(rng_or_seeds.random((n, NUM_ATTRIBUTES)))
  seeds = np.asarray(rng_or_seeds).reshape(-1)
  if seeds.size and (not np.issubdtype(seeds.dtype, np.integer) or seeds.min() < 0):
    raise ValueError("seeds must be non-negative integers.")
  if n is not None and n != seeds.size:
    raise ValueError(f"n={n} but {seeds.size} seeds given.")
  return _rows_from_uniform(_seed_uniforms(seeds))


def attribute_targets(attrs: np.ndarray) -> np.ndarray:
  """Classifier targets: binary stays 0/1, continuous is scaled to [0, 1].

  Args:
    attrs: float [N, A] raw attribute values.

  Returns:
    float32 [N, A] in [0, 1].
  """
  attrs = np.asarray(attrs, dtype=np.float32)
  t = (attrs - LOW) / (HIGH - LOW)
  return np.clip(t, 0.0, 1.0).astype(np.float32)


def format_attribute_table() -> str:
  """Markdown table of `ATTRIBUTES` for docs and reports."""
  rows = ["| # | name | range | binary (p) | parts | scope |", "|---|---|---|---|---|---|"]
  for i, a in enumerate(ATTRIBUTES):
    kind = f"yes ({a.prevalence:.2f})" if a.binary else "no"
    rows.append(
      f"| {i} | {a.name} | [{a.low:g}, {a.high:g}] | {kind} | "
      f"{', '.join(a.parts)} | {'local' if a.local else 'global'} |"
    )
  return "\n".join(rows)
