"""The explorer's server-side state: one generator, its render service, sigma, catalogue, uploads.

`Explorer` answers the page's requests with plain dicts (the Flask layer in app.py only
parses and serialises). Images are addressed by "sources" sent by the page:
{"seed": int, "psi": float} or {"upload": id} (an id this process issued for an uploaded
and inverted image; uploads live in memory only, the oldest dropped beyond MAX_UPLOADS).
Edits are [{"channel": "6_113", "alpha": float}]; sigma comes from the server's statistics,
and the exported edit file (edit_spec) records it.
"""

import collections
import threading
import uuid

import numpy as np

from ss_jax.stylespace import detection_stats, segmentation, stats, channels as stylespace
from ss_jax.runtime import fingerprints
from ss_jax.explorer import catalogue as catalogue_lib
from ss_jax.explorer import edit_spec, renderer, uploads, views

MAX_IMAGES = 8
MAX_EDITS = 64
MAX_UPLOADS = 32
THUMB_ALPHAS = (-10.0, 0.0, 10.0)
_CACHE = 256


class _Lru(collections.OrderedDict):
  def __init__(self, size):
    super().__init__()
    self.size = size

  def put(self, key, value):
    self[key] = value
    self.move_to_end(key)
    while len(self) > self.size:
      self.popitem(last=False)
    return value


class Explorer:
  """State behind the page (thread-safe: the caches are guarded, JAX dispatch is thread-safe)."""

  def __init__(
    self,
    g,
    *,
    name="generator",
    sigma=None,
    sigma_source="",
    workdir_results=None,
    segmenter=None,
    table=None,
    encoder=None,
    encoder_reason="",
    max_batch=renderer.DEFAULT_MAX_BATCH,
    sigma_samples=catalogue_lib.ON_THE_FLY_SAMPLES,
    measure=True,
  ):
    self.g = g
    self.name = name
    self.fingerprint = fingerprints.model_fingerprint(g)
    self.service = renderer.RenderService(g, max_batch)
    self.resolution = int(g.config.img_resolution)
    res = workdir_results or {"categories": [], "entries": [], "mean_maps": {}, "notes": []}
    if sigma is None:
      sigma = catalogue_lib.population_sigma(g, sigma_samples)
      sigma_source = f"computed at start: {sigma_samples} samples, psi {catalogue_lib.ON_THE_FLY_PSI} (seeds 0..)"
    stats.check(np.zeros_like(sigma), sigma, g.layout, "sigma")
    self.sigma = np.asarray(sigma, np.float64)
    self.sigma_source = sigma_source
    self.segmenter, self.table = segmenter, table
    self.encoder, self.encoder_reason = encoder, encoder_reason
    self._lock = threading.Lock()
    self._cache = _Lru(_CACHE)
    self._uploads = _Lru(MAX_UPLOADS)
    self.catalogue = {
      "source": "workdir" if res["entries"] else "none",
      "notes": list(res["notes"]),
      "categories": res["categories"],
      "entries": res["entries"],
      "layers": catalogue_lib.layers_of(g.layout),
      "status": "ready",
    }
    self.mean_maps = dict(res["mean_maps"])
    if measure and not res["entries"] and segmenter is not None:
      self.catalogue["status"] = "measuring"
      threading.Thread(target=self._measure, name="measure-locality", daemon=True).start()

  # ------------------------------------------------------------------ info and catalogue

  def info(self):
    cfg = self.g.config
    return {
      "name": self.name,
      "resolution": self.resolution,
      "num_channels": stylespace.num_channels(self.g.layout),
      "c_dim": cfg.c_dim,
      "model": self.fingerprint[:12],
      "sigma_source": self.sigma_source,
      "upload": {
        "available": self.encoder is not None,
        "reason": self.encoder_reason,
        "modes": list(uploads.MODES),
        "max_bytes": uploads.MAX_BYTES,
        "max_pixels": uploads.MAX_PIXELS,
        "formats": list(uploads.FORMATS),
      },
      "segmenter": self.table.name if self.segmenter is not None else None,
      "limits": {"images": MAX_IMAGES, "edits": MAX_EDITS, "alpha": edit_spec.MAX_ALPHA},
      "counters": dict(self.service.counters),
    }

  def _measure(self):
    try:
      cats, entries, maps = catalogue_lib.measure_locality(self.g, self.segmenter, self.table)
      with self._lock:
        self.mean_maps.update(maps)
        self.catalogue.update(categories=cats, entries=entries, status="ready", source="on the fly")
        self.catalogue["notes"].append(
          f"categories measured at start on {len(catalogue_lib.LOCALITY_SEEDS)} images (seeds 0..), "
          "locally-active rule of experiments.detect_local: candidates, not verified"
        )
    except Exception as e:  # pylint: disable=broad-except
      with self._lock:
        self.catalogue.update(status="failed")
        self.catalogue["notes"].append(f"on-the-fly locality measurement failed: {type(e).__name__}")

  def get_catalogue(self):
    with self._lock:
      return dict(self.catalogue, entries=list(self.catalogue["entries"]))

  # ------------------------------------------------------------------ sources

  def _source(self, src):
    """-> (key, image entry for edit_spec, flat row (C,))."""
    if not isinstance(src, dict):
      raise ValueError("each image must be {'seed': n, 'psi': x} or {'upload': id}")
    if "upload" in src:
      with self._lock:
        up = self._uploads.get(str(src["upload"]))
      if up is None:
        raise ValueError("unknown or expired upload; upload the image again")
      return ("u", str(src["upload"])), edit_spec.code_image(up["s"], up["name"], up["method"]), up["s"]
    seed, psi = src.get("seed"), src.get("psi", 0.7)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
      raise ValueError("seed must be an integer in [0, 2^32)")
    if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not -2.0 <= psi <= 2.0:
      raise ValueError("psi must be a number in [-2, 2]")
    entry = edit_spec.seed_image(seed, psi)
    key = ("s", seed, entry["psi"])
    with self._lock:
      row = self._cache.get(key)
    if row is None:
      row = renderer.seed_styles(self.g, [seed], np.float32(entry["psi"]))[0]
      with self._lock:
        self._cache.put(key, row)
    return key, entry, row

  def _sources(self, sources):
    if not isinstance(sources, list) or not sources:
      raise ValueError("no images selected")
    if len(sources) > MAX_IMAGES:
      raise ValueError(f"at most {MAX_IMAGES} images at once")
    return [self._source(s) for s in sources]

  def _edits(self, edits):
    if not isinstance(edits, list) or len(edits) > MAX_EDITS:
      raise ValueError(f"edits must be a list of at most {MAX_EDITS} channels")
    out, seen = [], set()
    for e in edits:
      if not isinstance(e, dict):
        raise ValueError("each edit must be {'channel': 'L_C', 'alpha': x}")
      flat = stylespace.parse_name(self.g.layout, e.get("channel", ""))
      a = e.get("alpha")
      if isinstance(a, bool) or not isinstance(a, (int, float)) or not abs(a) <= edit_spec.MAX_ALPHA:
        raise ValueError(f"alpha of {e.get('channel')} must be a number within +-{edit_spec.MAX_ALPHA:g}")
      if flat in seen:
        raise ValueError(f"channel {e['channel']} selected twice")
      seen.add(flat)
      out.append(
        {
          "channel": stylespace.name_of(self.g.layout, flat),
          "alpha": float(np.float32(a)),
          "sigma": float(np.float32(self.sigma[flat])),
          "flat": flat,
        }
      )
    return out

  def _base_image(self, key, row):
    with self._lock:
      img = self._cache.get(("img",) + key)
    if img is None:
      img = self.service.render(row[None])[0]
      with self._lock:
        self._cache.put(("img",) + key, img)
    return img

  def _categories(self, key, img):
    """(H, W) category ids of the unedited image (cached), or None without a segmenter."""
    if self.segmenter is None:
      return None
    with self._lock:
      cats = self._cache.get(("cats",) + key)
    if cats is None:
      cats = self.table.merge(segmentation.segment(self.segmenter, img[None]))[0]
      with self._lock:
        self._cache.put(("cats",) + key, cats)
    return cats

  # ------------------------------------------------------------------ requests

  def _channel_category(self, name):
    with self._lock:
      for e in self.catalogue["entries"]:
        if e["name"] == name:
          return e["category"]
    return None

  def _region(self, key, img, row, edits, delta):
    """(mask (H, W) bool, description) for the outline and the edit's locality."""
    cats = self._categories(key, img)
    names = [self._channel_category(e["channel"]) for e in edits]
    if cats is not None and any(names):
      ids = sorted({self.table.index(n) for n in names if n in self.table.categories})
      if ids:
        return np.isin(cats, ids), " + ".join(self.table.categories[i] for i in ids) + " (segmenter)"
    if cats is not None and edits:
      best = self._best_category(key, img, row, edits[-1]["flat"])
      if best is not None:
        return cats == best, f"{self.table.categories[best]} (segmenter; best for {edits[-1]['channel']} here)"
    return views.changed_region(delta), f"|delta| > {views.CHANGED_FRACTION:g} of its max (no segmenter)"

  def _best_category(self, key, img, row, flat):
    """Winning category of one channel on one image (the paper's overlap score, detection_stats), or None."""
    m = self._channel_map(key, row, flat)
    cats = self._categories(key, img)
    k = self.table.num_categories
    small = segmentation.reduce_labels(cats[None], m.shape[0], k)
    n, area = detection_stats.overlap_counts(m[None, None], small, k)
    win = detection_stats.winners(detection_stats.overlap_scores(n, area))[0, 0]
    return None if win < 0 else int(win)

  def _channel_map(self, key, row, flat):
    with self._lock:
      m = self._cache.get(("map", flat) + key)
    if m is None:
      m = renderer.channel_map(self.g, row, flat)
      with self._lock:
        self._cache.put(("map", flat) + key, m)
    return m

  def render(self, sources, edits, delta=False, outline=False):
    """-> {"images": [{"image", "delta"?, "outline"?, "region"?, "locality"?}], "edits": [...]}."""
    srcs, edits = self._sources(sources), self._edits(edits)
    flat = edit_spec.apply(self.g.layout, np.stack([row for _, _, row in srcs]), edits)
    out = self.service.render(flat)
    result = []
    for (key, _, row), img in zip(srcs, out):
      item = {"image": views.png_data_url(img)}
      if delta or outline:
        d = views.delta_map(img, self._base_image(key, row))
        item["max_delta"] = round(float(d.max()), 2)
        if delta:
          item["delta"] = views.png_data_url(views.heat_rgba(d))
        if outline:
          mask, what = self._region(key, self._base_image(key, row), row, edits, d)
          share, area = views.locality(d, mask)
          item.update(
            outline=views.png_data_url(views.outline_rgba(mask)),
            region=what,
            locality=None if share is None else round(share, 3),
            area=round(area, 3),
          )
      result.append(item)
    return {"images": result, "edits": [{k: e[k] for k in ("channel", "alpha", "sigma")} for e in edits]}

  def channel(self, name, source):
    """Details of one channel on one image: gradient-map overlay, locality, edit thumbnail, measures."""
    flat = stylespace.parse_name(self.g.layout, name)
    name = stylespace.name_of(self.g.layout, flat)
    key, _, row = self._source(source)
    img = self._base_image(key, row)
    m = self._channel_map(key, row, flat)
    info = {
      "name": name,
      "layer": self.g.layout[int(stylespace.to_layer_channel(self.g.layout, flat)[0])].name,
      "sigma": float(self.sigma[flat]),
      "map": views.png_data_url(views.heat_rgba(m, self.resolution)),
      "map_max": float(m.max()),
    }
    with self._lock:
      info["entries"] = [e for e in self.catalogue["entries"] if e["name"] == name]
      mean = self.mean_maps.get(name)
    if mean is not None:
      info["mean_map"] = views.png_data_url(views.heat_rgba(mean, self.resolution))
    cats = self._categories(key, img)
    if cats is not None:
      cat = self._channel_category(name)
      k = self.table.index(cat) if cat in (self.table.categories or ()) else self._best_category(key, img, row, flat)
      if k is not None:
        share, area = views.locality(
          m, segmentation.reduce_labels(cats[None], m.shape[0], self.table.num_categories)[0] == k
        )
        info["locality"] = {"category": self.table.categories[k], "gradient_share": share, "area_share": area}
    thumbs = np.repeat(row[None], len(THUMB_ALPHAS), 0)
    thumbs[:, flat] = row[flat] + np.asarray(THUMB_ALPHAS, np.float32) * np.float32(self.sigma[flat])
    info["thumbnail"] = views.png_data_url(views.strip(self.service.render(thumbs)))
    info["thumbnail_alphas"] = list(THUMB_ALPHAS)
    return info

  def export(self, sources, edits):
    """-> {"spec": edit dict, "images": [PNG data URLs]} rendered the way a replay renders them."""
    srcs, edits = self._sources(sources), self._edits(edits)
    spec = edit_spec.make_spec(
      self.g,
      [entry for _, entry, _ in srcs],
      [e["flat"] for e in edits],
      [e["alpha"] for e in edits],
      self.sigma,
      self.sigma_source,
      self.fingerprint,
    )
    spec["generator"] = self.name
    flat = edit_spec.apply(self.g.layout, edit_spec.base_styles(self.g, spec["images"]), spec["edits"])
    imgs = edit_spec.render_each(self.g, flat, self.service.max_batch)
    return {"spec": spec, "images": [views.png_data_url(x) for x in imgs]}

  def upload(self, data, mode="encoder", steps=uploads.DEFAULT_HYBRID_STEPS, filename=""):
    if self.encoder is None:
      raise ValueError(self.encoder_reason or "no encoder for this generator: upload is unavailable")
    x, notes = uploads.decode(data, self.resolution, self.g.config.img_channels)
    s = uploads.invert(self.g, self.encoder, x, mode, steps)
    uid = uuid.uuid4().hex[:12]
    name = "".join(ch for ch in str(filename)[-64:] if ch.isalnum() or ch in "._- ") or "upload"
    with self._lock:
      self._uploads.put(uid, {"s": s, "name": name, "method": mode if mode == "encoder" else f"hybrid {steps}"})
    recon = self.service.render(s[None])[0]
    mse = float(np.mean((x.astype(np.float32) / 127.5 - recon.astype(np.float32) / 127.5) ** 2))
    return {
      "id": uid,
      "name": name,
      "notes": notes,
      "original": views.png_data_url(x),
      "reconstruction": views.png_data_url(recon),
      "mse": round(mse, 5),
    }

  def close(self):
    self.service.close()
