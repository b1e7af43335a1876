"""BiSeNet face parsing as a segmenter: images in [-1, 1] -> CelebAMask-HQ class labels.

`load_parser(path)` reads the official `79999_iter.pth` (torch-free) or a
directory written by `python -m converters`; the returned `FaceParser` maps
images (N, H, W, 3) float32 in [-1, 1] (or uint8 0..255) to uint8 labels
(N, H', W') over `segmentation.CELEBAMASK_HQ_CLASSES`. `ss_jax.stylespace.segmentation`
registers it as segmenter "bisenet" with the "ffhq" category table; that
segmenter loads the parser named by $SS_JAX_BISENET on first use.

Preprocessing follows the official test script (PIL resize to 512x512
BILINEAR, `ToTensor`, `Normalize`), on the uint8 grid by default
(`quantize=True`):
  1. float images -> uint8 values: rint((x + 1) * 127.5) clipped to 0..255,
     exactly `images.to_uint8`, i.e. what a saved PNG holds;
  2. resize to input_size x input_size (skipped where a side already has
     that size) as PIL's BILINEAR does it: the triangle filter whose support
     widens with the downscale factor (antialiasing), half-pixel centres,
     taps renormalised at the borders (= `jax.image.resize(method="linear",
     antialias=True)`), horizontal pass then vertical pass, each rounded to
     uint8 as PIL does. Bit-exact to Pillow for square inputs with
     integer-ratio sizes (128/256/1024 -> 512, tested); elsewhere a few pixels
     may be off by one level (Pillow's fixed-point weights; Pillow may run
     the vertical pass first for some non-square shapes);
  3. x / 255, then (x - mean) / std with the ImageNet mean and std, float32.
With quantize=False, steps 1-2 stay in float (one 2-D antialiased resize).
Labels at another resolution than the parser's come from the main logits
resized the same way (float, antialiased bilinear), then argmax.

Batches are padded to a multiple of the device count and sharded over a 1-D
mesh (axis "data"); params are replicated.
"""

import dataclasses
import functools
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ss_jax.parser import bisenet
from ss_jax.runtime import distributed
from ss_jax.runtime import images as images_lib
from ss_jax.runtime import outputs
from ss_jax.stylespace import segmentation

INPUT_SIZE = 512  # The official pipeline's parser input.
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
ENV_VAR = "SS_JAX_BISENET"

# Colours of the official test script's `vis_parsing_maps` (class i -> entry i; background white),
# blended as 0.4 * image + 0.6 * colour.
CLASS_COLORS = np.array(
  [
    (255, 255, 255),
    (255, 85, 0),
    (255, 170, 0),
    (255, 0, 85),
    (255, 0, 170),
    (0, 255, 0),
    (85, 255, 0),
    (170, 255, 0),
    (0, 255, 85),
    (0, 255, 170),
    (0, 0, 255),
    (85, 0, 255),
    (170, 0, 255),
    (0, 85, 255),
    (0, 170, 255),
    (255, 255, 0),
    (255, 255, 85),
    (255, 255, 170),
    (255, 0, 255),
    (255, 85, 255),
    (255, 170, 255),
    (0, 255, 255),
    (85, 255, 255),
    (170, 255, 255),
  ],
  np.uint8,
)


# ----------------------------------------------------------------------------- pure functions


def _round_u8(x):
  # PIL rounds half up ((v + 2^21) >> 22 in its fixed point) and clips to 0..255.
  return jnp.clip(jnp.floor(x + 0.5), 0, 255)


def _resize(x, h, w):
  return jax.image.resize(x, x.shape[:1] + (h, w) + x.shape[3:], "linear", antialias=True)


def pil_bilinear_resize(x, size):
  """PIL's `Image.resize(..., BILINEAR)` of uint8 images, on float32 values 0..255.

  Args:
    x: float32 (N, H, W, C) holding integers 0..255.
    size: (H', W').
  Returns:
    float32 (N, H', W', C) holding integers: horizontal pass, round, vertical
    pass, round (a pass is skipped where that side keeps its size).
  """
  h, w = size
  if x.shape[2] != w:
    x = _round_u8(_resize(x, x.shape[1], w))
  if x.shape[1] != h:
    x = _round_u8(_resize(x, h, w))
  return x


def preprocess(images, input_size: int = INPUT_SIZE, quantize: bool = True):
  """Images -> the parser's network input (module docstring, steps 1-3).

  Args:
    images: (N, H, W, 3) float in [-1, 1], or uint8 0..255.
    input_size: side of the square network input (a multiple of 32).
    quantize: work on the uint8 grid like PIL (else float throughout).

  Returns:
    float32 (N, input_size, input_size, 3), ImageNet-normalised.
  """
  if images.dtype == jnp.uint8:
    x = images.astype(jnp.float32)
  else:
    x = (images.astype(jnp.float32) + 1.0) * 127.5
    if quantize:
      x = jnp.clip(jnp.round(x), 0, 255)  # np.rint, as images.to_uint8
  s = input_size
  if quantize:
    x = pil_bilinear_resize(x, (s, s))
  elif x.shape[1:3] != (s, s):
    x = _resize(x, s, s)
  x = x / 255.0
  return (x - MEAN) / STD


def parse(params, images, *, input_size: int = INPUT_SIZE, quantize: bool = True, out_size=None, labels: bool = True):
  """Images -> main-head logits or labels.

  Args:
    params: folded BiSeNet params (`ss_jax.parser.bisenet`).
    images: (N, H, W, 3) float in [-1, 1] or uint8.
    out_size: (H', W') of the output; None: (H, W) of the images.
    labels: return uint8 argmax labels (N, H', W'), else float32 logits (N, H', W', C).
  """
  _, h, w, _ = images.shape
  out_size = tuple(out_size or (h, w))
  logits = bisenet.forward(params, preprocess(images, input_size, quantize))[0]
  if out_size != logits.shape[1:3]:
    logits = _resize(logits, *out_size)
  return jnp.argmax(logits, axis=-1).astype(jnp.uint8) if labels else logits


@functools.lru_cache(maxsize=32)
def _compiled(mesh, input_size, quantize, out_size, labels):
  fn = functools.partial(parse, input_size=input_size, quantize=quantize, out_size=out_size, labels=labels)
  return jax.jit(
    fn,
    in_shardings=(NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))),
    out_shardings=NamedSharding(mesh, P("data")),
  )


def _out_size(resolution, h, w):
  if resolution is None:
    return (h, w)
  if isinstance(resolution, (int, np.integer)):
    resolution = (resolution, resolution)
  out = tuple(int(r) for r in resolution)
  if len(out) != 2 or min(out) < 1:
    raise ValueError(f"label resolution must be a positive side or (height, width), got {resolution}")
  return out


# ----------------------------------------------------------------------------- parser object


@dataclasses.dataclass(frozen=True, eq=False)
class FaceParser:
  """A loaded BiSeNet; call it (or `.segment`) on images (N, H, W, 3).

  params: folded params (`ss_jax.parser.bisenet`); input_size: network input side
  (512 as the official pipeline); quantize: preprocess on the uint8 grid;
  batch_size: images per jitted call, rounded up to a multiple of the
  device count; mesh: 1-D mesh with axis "data" (default: all devices).
  """

  params: Any
  input_size: int = INPUT_SIZE
  quantize: bool = True
  batch_size: int = 8
  mesh: Any = None
  info: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    bisenet.check_input_size(self.input_size, self.input_size)
    if self.mesh is None:
      object.__setattr__(self, "mesh", distributed.local_mesh())

  @property
  def num_classes(self):
    return bisenet.num_classes_of(self.params)

  @functools.cached_property
  def _device_params(self):
    return jax.device_put(self.params, NamedSharding(self.mesh, P()))

  @property
  def _step(self):
    ndev = self.mesh.devices.size
    return -(-max(int(self.batch_size), 1) // ndev) * ndev

  def dispatch(self, images, resolution=None, labels=True):
    """Starts parsing one batch (at most the padded batch size); returns (device array, n).

    The result is computed asynchronously: `np.asarray(out)[:n]` waits for it.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    if images.dtype != np.uint8:
      images = images.astype(np.float32, copy=False)
    n = len(images)
    step = self._step
    if n > step:
      raise ValueError(f"dispatch takes at most {step} images, got {n}")
    if n < step:  # a fixed batch shape compiles once; pad rows are dropped
      images = np.concatenate([images, np.zeros((step - n,) + images.shape[1:], images.dtype)])
    out_size = _out_size(resolution, *images.shape[1:3])
    fn = _compiled(self.mesh, self.input_size, self.quantize, out_size, labels)
    return fn(self._device_params, images), n

  def _run(self, images, resolution, labels):
    images = np.asarray(images)
    outs, pending = [], None
    for i in range(0, len(images), self._step):
      cur = self.dispatch(images[i : i + self._step], resolution, labels)
      if pending is not None:  # fetch the previous batch while this one runs
        outs.append(np.asarray(pending[0])[: pending[1]])
      pending = cur
    if pending is not None:
      outs.append(np.asarray(pending[0])[: pending[1]])
    if not outs:
      h, w = _out_size(resolution, *images.shape[1:3])
      return np.zeros((0, h, w) + (() if labels else (self.num_classes,)), np.uint8 if labels else np.float32)
    return np.concatenate(outs)

  def segment(self, images, resolution=None) -> np.ndarray:
    """(N, H, W, 3) float [-1, 1] or uint8 -> uint8 class labels (N, H', W').

    resolution: None (the images' H, W), an int side or an (H', W') pair.
    """
    return self._run(images, resolution, True)

  def logits(self, images, resolution=None) -> np.ndarray:
    """Main-head logits, float32 (N, H', W', num_classes); see `segment`."""
    return self._run(images, resolution, False)

  __call__ = segment


def load_parser(path=None, **kwargs) -> FaceParser:
  """A FaceParser from a BiSeNet `.pth` or a converted directory (default: $SS_JAX_BISENET).

  kwargs: FaceParser fields (input_size, quantize, batch_size, mesh).
  """
  if path is None:
    path = os.environ.get(ENV_VAR)
    if not path:
      raise FileNotFoundError(
        f"no face parser given: set ${ENV_VAR} to BiSeNet's 79999_iter.pth or a "
        "directory converted with `python -m converters`"
      )
  from ss_jax.parser import checkpoint  # reads .pth files through converters/

  params, _, info = checkpoint.load_any(path)
  return FaceParser(params, info=info, **kwargs)


@functools.lru_cache(maxsize=1)
def default_segmenter() -> FaceParser:
  """The parser named by $SS_JAX_BISENET (loaded once)."""
  return load_parser()


# The "bisenet" segmenter of the analysis (labels in the FFHQ category table); the parser path
# comes from $SS_JAX_BISENET (a .pth or a converted directory).
segmentation.register_segmenter("bisenet", lambda: default_segmenter(), "ffhq")


def segment(images) -> np.ndarray:
  """Segmenter entry point (`--segmenter=ss_jax.parser.face_parser:segment`): see `FaceParser.segment`."""
  return default_segmenter().segment(images)


# ----------------------------------------------------------------------------- folders


def colorize(labels) -> np.ndarray:
  """(..., H, W) class labels -> (..., H, W, 3) uint8 colours (`CLASS_COLORS`)."""
  labels = np.asarray(labels)
  return CLASS_COLORS[labels % len(CLASS_COLORS)]


def overlay(image, labels, alpha=0.6) -> np.ndarray:
  """uint8 image (H, W, 3) blended with its label colours (h, w); image resized to (h, w) if needed."""
  from PIL import Image

  h, w = labels.shape
  if image.shape[:2] != (h, w):
    image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
  mix = (1 - alpha) * image.astype(np.float32) + alpha * colorize(labels).astype(np.float32)
  return np.clip(np.rint(mix), 0, 255).astype(np.uint8)


def _image_size(path):
  from PIL import Image, UnidentifiedImageError

  try:
    with Image.open(path) as im:
      return im.size[1], im.size[0]
  except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
    raise ValueError(f"cannot read image {path}: {e}") from e


def parse_folder(parser: FaceParser, images_dir, outdir, resolution=None, overlays=True, stream=sys.stderr):
  """Parses every image of a folder; writes OUTDIR/labels/<stem>.png (+ OUTDIR/overlays/<stem>.png).

  Label PNGs are single-channel (mode L) class indices at `resolution`
  (None: each image's own size), the names `segmentation.load_label_pngs`
  reads. Images of equal size are batched together; every file's header is
  checked before any work starts (a file whose data is corrupt stops the run
  when its batch is read, naming it).

  Returns:
    {"images": count, "labels": labels dir, "overlays": overlays dir or None}.
  """
  from ss_jax.runtime import images as imio

  files = images_lib.image_files(images_dir)
  sizes = [_image_size(p) for p in files]
  groups = {}
  for p, s in zip(files, sizes):
    groups.setdefault(s, []).append(p)
  outdir = outputs.claim(outdir, "labels")  # never into a folder of the user's files
  label_dir, overlay_dir = outdir / "labels", (outdir / "overlays" if overlays else None)
  step = parser._step  # pylint: disable=protected-access
  total, done, t0 = len(files), 0, time.perf_counter()

  def finish(batch_files, batch_images, dispatched):
    nonlocal done
    out = np.asarray(dispatched[0])[: dispatched[1]]
    for p, im, lab in zip(batch_files, batch_images, out):
      imio.save_png(label_dir / f"{p.stem}.png", lab)
      if overlay_dir is not None:
        imio.save_png(overlay_dir / f"{p.stem}.png", overlay(im, lab))
    done += len(batch_files)
    print(f"parsed {done}/{total} images ({done / (time.perf_counter() - t0):.2f} img/s)", file=stream)

  pending = None
  for batch_files in (g[i : i + step] for g in groups.values() for i in range(0, len(g), step)):
    batch = np.stack([images_lib.read_image(p)[0] for p in batch_files])
    cur = (batch_files, batch, parser.dispatch(batch, resolution))
    if pending is not None:  # write the previous batch while this one runs
      finish(*pending)
    pending = cur
  finish(*pending)
  return {"images": total, "labels": str(label_dir), "overlays": str(overlay_dir) if overlays else None}
