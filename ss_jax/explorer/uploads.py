"""Uploaded images: safe decoding (type, byte and pixel limits) and inversion to flat S.

Uploads are untrusted bytes. They are decoded from memory by PIL (never written to disk,
never looked up by a name the browser sends), only as PNG, JPEG, WebP or BMP, with the
pixel count checked from the header before any pixel is decoded. Errors are one-line
ValueErrors meant for the page.

Inversion uses the encoder trained for this generator (ss_jax.inversion.encoder) and, in "hybrid"
mode, a few optimisation steps in S from the encoder's code (ss_jax.inversion); a
generator without an encoder gets a clear message instead.
"""

import io

import numpy as np

MAX_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 16_000_000
FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
MODES = ("encoder", "hybrid")
DEFAULT_HYBRID_STEPS = 50
MAX_HYBRID_STEPS = 300


def decode(data, size, channels=3):
  """Image bytes -> (uint8 (size, size, channels), notes). ValueError when refused or unreadable."""
  from PIL import Image, UnidentifiedImageError

  if not data:
    raise ValueError("empty upload")
  if len(data) > MAX_BYTES:
    raise ValueError(f"upload is {len(data) / 1e6:.1f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB")
  try:
    im = Image.open(io.BytesIO(data), formats=FORMATS)
  except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
    raise ValueError(f"not an image this page accepts (allowed: {', '.join(FORMATS)})") from None
  notes = []
  try:
    w, h = im.size
    if w * h > MAX_PIXELS:
      raise ValueError(f"image is {w}x{h} pixels; the limit is {MAX_PIXELS / 1e6:.0f} megapixels")
    if w < 1 or h < 1:
      raise ValueError("image has no pixels")
    try:
      im.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
      raise ValueError("the image data is damaged or truncated") from None
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
      notes.append("alpha channel dropped")
    if channels == 3 and im.mode in ("L", "LA", "1", "I", "I;16", "F"):
      notes.append("greyscale image repeated to RGB")
    im = im.convert("RGB" if channels == 3 else "L")
    if (w, h) != (size, size):
      k = min(w, h)
      left, top = (w - k) // 2, (h - k) // 2
      im = im.crop((left, top, left + k, top + k)).resize((size, size), Image.LANCZOS)
      notes.append(f"resized {w}x{h} -> {size}x{size}" + (" (centre-cropped to a square)" if w != h else ""))
    x = np.asarray(im, np.uint8).reshape(size, size, channels)
  finally:
    im.close()
  return x, notes


def load_encoder_for(g, directory=None):
  """(Encoder or None, reason when None): the encoder trained for g, if one exists."""
  from ss_jax.inversion import encoder

  try:
    return encoder.load_encoder(directory, generator=g), ""
  except encoder.GeneratorMismatch:
    return None, (
      "this generator has no encoder (the shipped encoder belongs to the ToyFaces "
      "generator): upload is unavailable; invert offline with experiments.invert"
    )
  except (FileNotFoundError, ValueError) as e:
    return None, f"no encoder available: {e}"


def invert(g, enc, image_uint8, mode="encoder", steps=DEFAULT_HYBRID_STEPS):
  """(H, W, C) uint8 -> (flat S (C,) float32, reconstruction loss description)."""
  if mode not in MODES:
    raise ValueError(f"unknown inversion mode {mode!r}; use one of {', '.join(MODES)}")
  if enc is None:
    raise ValueError("no encoder for this generator")
  s = enc.encode(image_uint8[None])["s"]
  if mode == "hybrid":
    steps = int(steps)
    if not 1 <= steps <= MAX_HYBRID_STEPS:
      raise ValueError(f"hybrid steps must be in 1..{MAX_HYBRID_STEPS}")
    from ss_jax.runtime import images as images_lib
    from ss_jax.inversion import optimise as inversion

    target = images_lib.from_uint8(image_uint8[None])
    s = inversion.invert(g, target, space="s", steps=steps, init=s).styles
  return np.asarray(s[0], np.float32)
