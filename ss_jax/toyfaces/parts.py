"""ToyFaces part classes, their FFHQ categories, and label-map helpers.

Label maps are uint8 [N, H, W] holding a part index into `PART_NAMES`.
`CATEGORY_OF_PART` maps each part onto the FFHQ/CelebAMask-style categories
used by the StyleSpace analysis code (`CATEGORIES`).
"""

import numpy as np

PART_NAMES: tuple[str, ...] = (
  "background",  # 0
  "skin",  # 1  face
  "hair",  # 2  back hair, hairline and bangs
  "eye",  # 3  left + right: sclera, iris, pupil or closed lash arc
  "eyebrow",  # 4
  "nose",  # 5
  "mouth",  # 6  lips, mouth interior, teeth, tongue
  "ear",  # 7
  "neck",  # 8
  "clothes",  # 9
  "glasses",  # 10
  "hat",  # 11
  "earring",  # 12
)
PART_INDEX: dict[str, int] = {n: i for i, n in enumerate(PART_NAMES)}
NUM_PARTS = len(PART_NAMES)

CATEGORIES: tuple[str, ...] = (
  "background",
  "skin",
  "eyebrow",
  "eye",
  "ear",
  "nose",
  "mouth",
  "hair",
  "neck",
  "clothes",
  "others",
)
CATEGORY_INDEX: dict[str, int] = {n: i for i, n in enumerate(CATEGORIES)}

CATEGORY_OF_PART: dict[str, str] = {
  "background": "background",
  "skin": "skin",
  "hair": "hair",
  "eye": "eye",
  "eyebrow": "eyebrow",
  "nose": "nose",
  "mouth": "mouth",
  "ear": "ear",
  "neck": "neck",
  "clothes": "clothes",
  "glasses": "others",
  "hat": "others",
  "earring": "others",
}

# uint8 [NUM_PARTS]: part index -> category index.
PART_TO_CATEGORY = np.array([CATEGORY_INDEX[CATEGORY_OF_PART[p]] for p in PART_NAMES], dtype=np.uint8)

# Distinct colours for visualising label maps, uint8 [NUM_PARTS, 3].
PART_PALETTE = np.array(
  [
    (0, 0, 0),
    (230, 180, 150),
    (120, 60, 20),
    (40, 90, 255),
    (255, 230, 0),
    (255, 110, 0),
    (220, 20, 60),
    (0, 200, 120),
    (160, 120, 200),
    (70, 70, 160),
    (0, 255, 255),
    (200, 0, 200),
    (255, 255, 255),
  ],
  dtype=np.uint8,
)


def part_masks(labels: np.ndarray, num_parts: int = NUM_PARTS) -> np.ndarray:
  """One-hot part masks.

  Args:
    labels: uint8 [N, H, W] part indices.
    num_parts: K, number of classes.

  Returns:
    bool [N, K, H, W]; exactly one True per pixel.
  """
  labels = np.asarray(labels)
  k = np.arange(num_parts, dtype=labels.dtype).reshape(1, -1, 1, 1)
  return labels[:, None] == k


def category_labels(labels: np.ndarray) -> np.ndarray:
  """Maps part labels uint8 [N, H, W] to FFHQ category indices (same shape)."""
  return PART_TO_CATEGORY[np.asarray(labels)]


def category_masks(labels: np.ndarray) -> np.ndarray:
  """bool [N, len(CATEGORIES), H, W] masks of the FFHQ categories."""
  return part_masks(category_labels(labels), len(CATEGORIES))


def colorize_labels(labels: np.ndarray) -> np.ndarray:
  """uint8 [..., H, W] part labels -> uint8 [..., H, W, 3] for viewing."""
  return PART_PALETTE[np.asarray(labels)]
