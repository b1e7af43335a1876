"""The edit file: what the explorer exports and `experiments.manipulate --edit=FILE.json` replays.

  {"format": "ss-jax-edit", "version": 1,
   "model": "<fingerprints.model_fingerprint of the generator>",
   "images": [{"seed": 3, "psi": 0.7, "class_idx": null},              # a generated image
              {"code": [C floats], "name": "me.png", "method": "encoder"}],   # flat S of an upload
   "edits": [{"channel": "6_113", "alpha": 2.5, "sigma": 0.0123}, ...],
   "sigma_source": "...", "noise_mode": "const"}

Every image gets every edit: s[c] <- s[c] + float32(alpha) * float32(sigma) (float32 host
arithmetic, one add per edited channel), then the image is rendered with the stored noise
by ss_jax.explorer.renderer. sigma is stored in the file, so a replay needs no statistics
file; codes are stored as the float32 values they are (JSON numbers round-trip exactly), so
a replay gives the same pixels as the explorer. The model fingerprint guards against
replaying with another generator.
"""

import json
import math
import pathlib

import numpy as np

from ss_jax.stylespace import channels as stylespace
from ss_jax.runtime import fingerprints
from ss_jax.explorer import renderer

FORMAT = "ss-jax-edit"
VERSION = 1
MAX_ALPHA = 1000.0


def _f32(x):
  """A float32 value as the exactly equal Python float (what JSON stores)."""
  return float(np.float32(x))


def seed_image(seed, psi, class_idx=None):
  return {"seed": int(seed), "psi": _f32(psi), "class_idx": None if class_idx is None else int(class_idx)}


def code_image(code, name="", method=""):
  return {"code": [float(v) for v in np.asarray(code, np.float32).ravel()], "name": str(name), "method": str(method)}


def make_spec(g, images, channels, alphas, sigma, sigma_source="", fingerprint=None):
  """The edit dict. channels: names or flat indices; alphas (K,); sigma: (C,) std of every channel."""
  idx = [int(i) for i in np.ravel(_indices(g.layout, channels))]
  alphas = [float(a) for a in np.ravel(alphas)]
  if len(alphas) != len(idx):
    raise ValueError(f"{len(idx)} channels but {len(alphas)} alphas")
  sigma = np.asarray(sigma, np.float64)
  spec = {
    "format": FORMAT,
    "version": VERSION,
    "model": fingerprint or fingerprints.model_fingerprint(g),
    "images": list(images),
    "edits": [
      {"channel": stylespace.name_of(g.layout, i), "alpha": _f32(a), "sigma": _f32(sigma[i])}
      for i, a in zip(idx, alphas)
    ],
    "sigma_source": str(sigma_source),
    "noise_mode": "const",
  }
  check(spec, g.layout)
  return spec


def _indices(layout, channels):
  if isinstance(channels, str) or (len(channels) and isinstance(list(channels)[0], str)):
    return stylespace.parse_names(layout, channels) if len(channels) else np.zeros(0, np.int64)
  return np.asarray(channels, np.int64)


def _number(x, what):
  if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
    raise ValueError(f"{what} must be a finite number, got {x!r}")
  return float(x)


def check(spec, layout):
  """ValueError with the first problem unless spec is a well-formed edit for this layout."""
  if not isinstance(spec, dict) or spec.get("format") != FORMAT:
    raise ValueError(f"not an ss-jax edit file (format must be {FORMAT!r})")
  if spec.get("version") != VERSION:
    raise ValueError(f"edit file version {spec.get('version')!r} is not supported (expected {VERSION})")
  c = stylespace.num_channels(layout)
  imgs = spec.get("images")
  if not isinstance(imgs, list) or not imgs:
    raise ValueError("edit file has no images")
  for i, im in enumerate(imgs):
    if not isinstance(im, dict) or ("seed" in im) == ("code" in im):
      raise ValueError(f"images[{i}] must have either 'seed' (with 'psi') or 'code'")
    if "seed" in im:
      if isinstance(im["seed"], bool) or not isinstance(im["seed"], int) or not 0 <= im["seed"] < 2**32:
        raise ValueError(f"images[{i}].seed must be an integer in [0, 2^32)")
      _number(im.get("psi"), f"images[{i}].psi")
    else:
      code = im["code"]
      if not isinstance(code, list) or len(code) != c:
        raise ValueError(f"images[{i}].code must be a list of {c} numbers (flat S of this model)")
      for v in code:
        _number(v, f"images[{i}].code values")
  edits = spec.get("edits")
  if not isinstance(edits, list):
    raise ValueError("edit file has no 'edits' list")
  seen = set()
  for k, e in enumerate(edits):
    if not isinstance(e, dict):
      raise ValueError(f"edits[{k}] must be an object")
    flat = stylespace.parse_name(layout, e.get("channel", ""))
    if flat in seen:
      raise ValueError(f"channel {e['channel']} is edited twice")
    seen.add(flat)
    if abs(_number(e.get("alpha"), f"edits[{k}].alpha")) > MAX_ALPHA:
      raise ValueError(f"edits[{k}].alpha is beyond +-{MAX_ALPHA:g}")
    _number(e.get("sigma"), f"edits[{k}].sigma")
  return spec


def load(path, layout):
  """Read and check an edit JSON file."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"edit file not found: {path}")
  try:
    spec = json.loads(path.read_text())
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: not a JSON file ({e})") from e
  return check(spec, layout)


def check_model(spec, g, fingerprint=None):
  got = fingerprint or fingerprints.model_fingerprint(g)
  if spec["model"] != got:
    raise ValueError(
      f"the edit was made with generator {str(spec['model'])[:12]}..., this is {got[:12]}... "
      "(pass the same --checkpoint as the explorer used)"
    )


def base_styles(g, images):
  """The unedited flat S of every image entry: (N, C) float32."""
  rows = []
  for im in images:
    if "seed" in im:
      rows.append(renderer.seed_styles(g, [im["seed"]], np.float32(im["psi"]), im.get("class_idx")))
    else:
      rows.append(np.asarray(im["code"], np.float32)[None])
  return np.concatenate(rows)


def apply(layout, flat, edits):
  """(N, C) float32 styles + [{"channel", "alpha", "sigma"}] -> edited copy (float32 host arithmetic)."""
  out = np.array(flat, np.float32, copy=True)
  for e in edits:
    i = stylespace.parse_name(layout, e["channel"])
    out[:, i] = out[:, i] + np.float32(e["alpha"]) * np.float32(e["sigma"])
  return out


def replay(g, spec, max_batch=renderer.DEFAULT_MAX_BATCH):
  """Rendered edit of every image: (N, H, W, img_c) uint8 (checks the model fingerprint first)."""
  check(spec, g.layout)
  check_model(spec, g)
  flat = apply(g.layout, base_styles(g, spec["images"]), spec["edits"])
  return render_each(g, flat, max_batch)


def render_each(g, flat, max_batch=renderer.DEFAULT_MAX_BATCH):
  """Each row rendered on its own (batch of one): the canonical rendering of exports and replays."""
  return np.concatenate([renderer.render_rows(g, row[None], max_batch) for row in np.asarray(flat)])


def replay_file(g, path, outdir):
  """Replays an edit file into outdir/edit_<i>.png (one per image); -> the written paths."""
  from ss_jax.runtime import images as images_lib

  spec = load(path, g.layout)
  out = pathlib.Path(outdir)
  paths = []
  for i, x in enumerate(replay(g, spec)):
    paths.append(out / f"edit_{i}.png")
    images_lib.save_png(paths[-1], x)
  return paths
