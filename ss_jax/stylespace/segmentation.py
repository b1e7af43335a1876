"""Semantic masks for the locally-active channel analysis: category tables and mask utilities.

A face parser labels every pixel with one of its own classes (CelebAMask-HQ's 19
classes for the BiSeNet parser the StyleSpace authors used, ToyFaces' part
indices, ...). A `CategoryTable` merges those classes into the coarser
categories the 32x32 gradient maps can resolve; tables are plain data and can be
built from a dict (`table_from_dict`).

Masks come from either source, so any parser can be plugged in:

* a segmenter: a function `images (N, H, W, 3) float32 in [-1, 1] -> (N, H, W)
  int class labels`, registered by name (`register_segmenter`; "toyfaces" is the
  shipped ToyFaces part segmenter, `ss_jax.toyfaces.models`) or given as
  "package.module:function";
* a folder of label PNGs, one single-channel class-index image per generated
  image, named by seed `seed0001.png` (the names `experiments.generate` gives
  the images; seeds above 9999 simply have more digits) or by 0-based position in
  the analysed image order `00001.png`. The seed name is used when both exist.

Label maps are reduced to the gradient maps' R x R grid by block majority vote
(`reduce_labels`).
"""

import dataclasses
import importlib
import os
import pathlib
from typing import Callable, Mapping, Sequence

import numpy as np

# ----------------------------------------------------------------------------- category tables

CELEBAMASK_HQ_CLASSES = (
  "background",
  "skin",
  "l_brow",
  "r_brow",
  "l_eye",
  "r_eye",
  "eye_g",
  "l_ear",
  "r_ear",
  "ear_r",
  "nose",
  "mouth",
  "u_lip",
  "l_lip",
  "neck",
  "neck_l",
  "cloth",
  "hair",
  "hat",
)

# Order and membership of StyleSpace's `GetMask.py:CFFHQ` merge (`npy/ffhq/label`);
# category 0 collects every unmapped class (eye_g, ear_r, neck_l, hat).
FFHQ_CATEGORIES = ("others", "background", "skin", "eyebrow", "eye", "ear", "nose", "mouth", "neck", "clothes", "hair")
FFHQ_MERGE = {
  "background": ["background"],
  "skin": ["skin"],
  "eyebrow": ["l_brow", "r_brow"],
  "eye": ["l_eye", "r_eye"],
  "ear": ["l_ear", "r_ear"],
  "nose": ["nose"],
  "mouth": ["mouth", "u_lip", "l_lip"],
  "neck": ["neck"],
  "clothes": ["cloth"],
  "hair": ["hair"],
}


@dataclasses.dataclass(frozen=True)
class CategoryTable:
  """Merges a parser's classes into analysis categories.

  name: short id ("ffhq"); categories: K category names, position = category id;
  classes: parser class names, position = class id; lut: class id -> category id.
  """

  name: str
  categories: tuple
  classes: tuple
  lut: tuple

  def __post_init__(self):
    if len(self.lut) != len(self.classes):
      raise ValueError(f"table {self.name!r}: lut has {len(self.lut)} entries for {len(self.classes)} classes")
    if any(not 0 <= c < len(self.categories) for c in self.lut):
      raise ValueError(f"table {self.name!r}: lut refers to a category outside 0..{len(self.categories) - 1}")

  @property
  def num_categories(self):
    return len(self.categories)

  @property
  def num_classes(self):
    return len(self.classes)

  def index(self, category):
    """Category name or id -> id; a clear error for unknown names."""
    if isinstance(category, (int, np.integer)):
      if not 0 <= category < self.num_categories:
        raise ValueError(f"category {category} out of range 0..{self.num_categories - 1}")
      return int(category)
    if category not in self.categories:
      raise ValueError(f"unknown category {category!r}; table {self.name!r} has {', '.join(self.categories)}")
    return self.categories.index(category)

  def merge(self, labels):
    """(...) int class labels -> (...) uint8 category ids; ValueError on labels outside the table."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(f"labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
      raise ValueError(
        f"labels hold classes {labels.min()}..{labels.max()} but table {self.name!r} "
        f"has {self.num_classes} classes (0..{self.num_classes - 1})"
      )
    return np.asarray(self.lut, np.uint8)[labels]

  def to_dict(self):
    return {
      "name": self.name,
      "categories": list(self.categories),
      "classes": list(self.classes),
      "lut": list(self.lut),
    }

  @classmethod
  def from_json(cls, d):
    return cls(d["name"], tuple(d["categories"]), tuple(d["classes"]), tuple(int(c) for c in d["lut"]))


def table_from_dict(
  name, categories: Sequence[str], classes: Sequence[str], merge: Mapping[str, Sequence], default="others"
):
  """Builds a CategoryTable.

  Args:
    name: table id.
    categories: category names in id order.
    classes: parser class names in class-id order.
    merge: category name -> list of class names or ids it gathers.
    default: category for classes not listed in merge (None: every class must be listed).
  """
  categories, classes = tuple(categories), tuple(classes)
  lut = [None] * len(classes)
  for cat, members in merge.items():
    if cat not in categories:
      raise ValueError(f"table {name!r}: merge names unknown category {cat!r}")
    for m in members:
      i = m if isinstance(m, (int, np.integer)) else (classes.index(m) if m in classes else -1)
      if not 0 <= i < len(classes):
        raise ValueError(f"table {name!r}: unknown class {m!r}")
      if lut[i] is not None:
        raise ValueError(f"table {name!r}: class {classes[i]!r} is merged into two categories")
      lut[i] = categories.index(cat)
  missing = [classes[i] for i, c in enumerate(lut) if c is None]
  if missing and default is None:
    raise ValueError(f"table {name!r}: classes without a category: {', '.join(missing)}")
  fill = categories.index(default) if missing else 0
  return CategoryTable(name, categories, classes, tuple(fill if c is None else c for c in lut))


FFHQ = table_from_dict("ffhq", FFHQ_CATEGORIES, CELEBAMASK_HQ_CLASSES, FFHQ_MERGE)


# Segmenters and category tables of other parts (the ToyFaces world, the BiSeNet parser) register
# themselves when their module is imported; PLUGINS names the module to import on first use of a
# name, so the analysis code never imports them (a plugin table, as package entry points are).
PLUGINS = {"toyfaces": "ss_jax.toyfaces.segmenter", "bisenet": "ss_jax.parser.face_parser"}
TABLES = {"ffhq": lambda: FFHQ}
Segmenter = Callable[[np.ndarray], np.ndarray]  # (N, H, W, 3) float [-1, 1] -> (N, H, W) int
_SEGMENTERS = {}


def _load_plugin(name, registry):
  if name not in registry and name in PLUGINS:
    importlib.import_module(PLUGINS[name])


def register_table(name, factory):
  """Registers `factory() -> CategoryTable` under `name`."""
  TABLES[name] = factory


def get_table(name):
  _load_plugin(name, TABLES)
  if name not in TABLES:
    raise ValueError(f"unknown category table {name!r}; known: {', '.join(sorted(set(TABLES) | set(PLUGINS)))}")
  return TABLES[name]()


# ----------------------------------------------------------------------------- segmenters


def register_segmenter(name, factory, table):
  """Registers `factory() -> segmenter` (loaded lazily) whose labels use category table `table` (a name)."""
  _SEGMENTERS[name] = (factory, table)


def get_segmenter(spec):
  """A registered name or "package.module:function" -> (segmenter, default table name or None)."""
  _load_plugin(spec, _SEGMENTERS)
  if spec in _SEGMENTERS:
    factory, table = _SEGMENTERS[spec]
    return factory(), table
  if ":" not in spec:
    raise ValueError(
      f"unknown segmenter {spec!r}: use one of {', '.join(sorted(set(_SEGMENTERS) | set(PLUGINS)))} "
      "or 'package.module:function'"
    )
  mod_name, attr = spec.split(":", 1)
  try:
    fn = getattr(importlib.import_module(mod_name), attr)
  except (ImportError, AttributeError) as e:
    raise ValueError(f"cannot load segmenter {spec!r}: {e}") from e
  return fn, None


def segment(segmenter: Segmenter, images_uint8, batch_size=16):
  """uint8 images (N, H, W, C) -> (N, H, W) int32 class labels, fed to `segmenter` as [-1, 1] floats."""
  out = []
  for i in range(0, len(images_uint8), batch_size):
    x = np.asarray(images_uint8[i : i + batch_size], np.float32) / 127.5 - 1.0
    lab = np.asarray(segmenter(x))
    if lab.shape != x.shape[:3]:
      raise ValueError(
        f"segmenter returned labels of shape {lab.shape} for images of shape {x.shape}; expected {x.shape[:3]}"
      )
    out.append(lab.astype(np.int32))
  return np.concatenate(out) if out else np.zeros((0,) + tuple(images_uint8.shape[1:3]), np.int32)


# ----------------------------------------------------------------------------- label PNGs


def label_png_names(seed, index):
  """Candidate file names of an image's label PNG, in lookup order."""
  return (f"seed{seed:04d}.png", f"{index:05d}.png")


def load_label_pngs(directory, seeds, indices):
  """Reads one label PNG per image -> (N, H, W) int32 class labels.

  Args:
    directory: folder of single-channel PNGs (mode L, P or I;16) holding class ids.
    seeds, indices: (N,) seed and 0-based position of each image (see module docstring).
  """
  from PIL import Image

  directory = pathlib.Path(directory)
  if not directory.is_dir():
    raise ValueError(f"labels folder not found: {directory}")
  out = []
  for seed, index in zip(seeds, indices):
    names = label_png_names(int(seed), int(index))
    path = next((directory / n for n in names if (directory / n).is_file()), None)
    if path is None:
      raise ValueError(f"no label PNG for image {index} (seed {seed}) in {directory}: expected {' or '.join(names)}")
    with Image.open(path) as im:
      if im.mode not in ("L", "P", "I;16", "I"):
        raise ValueError(f"{path}: label PNGs must be single-channel class-index images, got mode {im.mode}")
      lab = np.asarray(im).astype(np.int32)
    if out and lab.shape != out[0].shape:
      raise ValueError(f"{path}: size {lab.shape} differs from the other label PNGs ({out[0].shape})")
    out.append(lab)
  return np.stack(out)


def labels_from_dir(directory):
  """labels_fn for locally_active.run_detection reading label PNGs from `directory`."""
  return lambda seeds, index, images: load_label_pngs(directory, seeds, index)


def labels_from_segmenter(segmenter: Segmenter, batch_size=16):
  """labels_fn for locally_active.run_detection running `segmenter` on the stored images."""
  return lambda seeds, index, images: segment(segmenter, images, batch_size)


def check_labels(labels, table: CategoryTable, image_size):
  """Checks (N, H, W) parser labels against the images and the table; returns them merged to categories.

  Raises ValueError (one line) when the mask size is not the images' (H, W) or a
  label is not a class of the table.
  """
  labels = np.asarray(labels)
  if labels.ndim != 3 or labels.shape[1:] != tuple(image_size):
    raise ValueError(f"masks of size {labels.shape[1:]} do not match the images' size {tuple(image_size)}")
  return table.merge(labels)


# ----------------------------------------------------------------------------- reduction


def reduce_labels(labels, size, num_categories):
  """Block majority vote: (N, H, W) category ids -> (N, size, size) uint8.

  Each output cell takes the most frequent category among its (H/size) x (W/size)
  pixels; ties go to the lowest category id (argmax of the counts), as in
  StyleSpace's `align_mask.py` (one-hot, block sum, argmax). H and W must be
  multiples of size; size >= H leaves the map unchanged.
  """
  labels = np.asarray(labels)
  n, h, w = labels.shape
  if h == size and w == size:
    return labels.astype(np.uint8)
  if h % size or w % size:
    raise ValueError(f"mask size {h}x{w} is not a multiple of the gradient-map size {size}")
  fh, fw = h // size, w // size
  blocks = labels.reshape(n, size, fh, size, fw).transpose(0, 1, 3, 2, 4).reshape(n, size, size, fh * fw)
  counts = np.zeros((n, size, size, num_categories), np.int32)
  for k in range(num_categories):  # K is small; avoids an (N, R, R, f*f, K) one-hot
    counts[..., k] = np.sum(blocks == k, axis=-1)
  return np.argmax(counts, axis=-1).astype(np.uint8)


def category_areas(cats, num_categories):
  """(N, R, R) category ids -> (N, K) int32 cell counts."""
  cats = np.asarray(cats).reshape(len(cats), -1)
  return np.stack([np.sum(cats == k, axis=1) for k in range(num_categories)], axis=1).astype(np.int32)


# Distinct colours for viewing category maps, cycled for tables with more categories.
PALETTE = np.array(
  [
    (128, 128, 128),
    (0, 0, 0),
    (230, 180, 150),
    (255, 230, 0),
    (40, 90, 255),
    (0, 200, 120),
    (255, 110, 0),
    (220, 20, 60),
    (160, 120, 200),
    (70, 70, 160),
    (120, 60, 20),
  ],
  np.uint8,
)


def colorize(cats):
  """(..., H, W) category ids -> (..., H, W, 3) uint8."""
  cats = np.asarray(cats)
  return PALETTE[cats % len(PALETTE)]


def labels_source(labels_dir=None, segmenter=None, categories=None):
  """The masks of a detection run from its flags -> (labels_fn, plain-data source, CategoryTable).

  labels_dir: folder of label PNGs; segmenter: a registered name or "module:function"
  (default "toyfaces" when neither is given); categories: table name (default: the
  segmenter's, else "ffhq").
  """
  if labels_dir and segmenter:
    raise ValueError("give either --labels_dir or --segmenter, not both")
  if labels_dir:
    fn, source, table_name = labels_from_dir(labels_dir), {"labels_dir": os.path.abspath(labels_dir)}, categories
  else:
    seg, seg_table = get_segmenter(segmenter or "toyfaces")
    fn, source = labels_from_segmenter(seg), {"segmenter": segmenter or "toyfaces"}
    table_name = categories or seg_table
  return fn, source, get_table(table_name or "ffhq")
