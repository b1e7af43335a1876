"""NVIDIA stylegan3 (alias-free, T and R) snapshot pickles -> StyleGAN3 config dict + numpy params.

A StyleGAN3 generator is recognised by its structure (`synthesis.input` with
Fourier `freqs` / `phases` buffers and `synthesis.L{i}_{size}_{ch}` layers), never by
class names, which StyleGAN2 and StyleGAN3 share (`Generator`, `MappingNetwork`,
`FullyConnectedLayer`). The config comes from the constructor kwargs (official
defaults otherwise) and every layer's geometry is cross-checked against the stored
module attributes and tensor shapes; the stored filters are used as they are.

Nothing here imports ss_jax: the library (ss_jax.stylegan2.checkpoint.load_checkpoint) builds the
StyleGAN3Config from the returned dict and passes its layer table (ss_jax.stylegan3.config.layer_table:
(input spec, layer specs) with the fields name, channels, size / in_channels, out_channels,
conv_kernel, up_factor, down_factor, up_taps, down_taps, down_radial, padding, is_torgb,
in_sampling_rate, out_sampling_rate) to the params function, which checks the stored layers
against it before mapping the tensors.
"""

import numpy as np

from converters.common import TensorSource, oihw_to_hwio
from converters.io import CheckpointError

# SynthesisNetwork / SynthesisLayer constructor defaults (official code).
_SYN_DEFAULTS = {
  "channel_base": 32768,
  "channel_max": 512,
  "num_layers": 14,
  "num_critical": 2,
  "first_cutoff": 2,
  "first_stopband": 2**2.1,
  "last_stopband_rel": 2**0.3,
  "margin_size": 10,
  "output_scale": 0.25,
  "conv_kernel": 3,
  "filter_size": 6,
  "lrelu_upsampling": 2,
  "use_radial_filters": False,
  "conv_clamp": 256,
}
_CHECKED_ATTRS = (
  "in_channels",
  "out_channels",
  "conv_kernel",
  "up_factor",
  "down_factor",
  "up_taps",
  "down_taps",
  "down_radial",
  "padding",
  "is_torgb",
  "in_sampling_rate",
  "out_sampling_rate",
)


def looks_like_stylegan3(G):
  """True when the generator module has a StyleGAN3 synthesis network (Fourier input)."""
  syn = G.children.get("synthesis")
  inp = syn.children.get("input") if syn is not None else None
  return inp is not None and "freqs" in inp.params and "phases" in inp.params


def config_from_module(G, path):
  """StyleGAN3Config fields (dict, plus "family": "stylegan3") from the constructor kwargs.

  The stored layers are checked against the config's layer table by the params function.
  """
  kw = dict(G.init_kwargs)
  missing = [k for k in ("z_dim", "w_dim", "img_resolution") if k not in kw]
  if missing:
    raise CheckpointError(f"{path}: StyleGAN3 generator has no {missing} in its constructor kwargs")
  sd = G.state_dict()
  syn = G.submodule("synthesis")
  syn_kw = {**_SYN_DEFAULTS, **{k: kw[k] for k in _SYN_DEFAULTS if k in kw}}
  for k in ("num_layers", "num_critical", "margin_size", "output_scale"):  # as built, if stored
    if k in syn.attrs:
      syn_kw[k] = syn.attrs[k]
  num_map = sum(1 for k in sd if k.startswith("mapping.fc") and k.endswith(".weight"))
  fc0 = G.submodule("mapping.fc0")
  lr = float(fc0.attrs.get("bias_gain", (kw.get("mapping_kwargs") or {}).get("lr_multiplier", 0.01)))
  clamp = syn_kw["conv_clamp"]
  try:
    return dict(
      family="stylegan3",
      z_dim=int(kw["z_dim"]),
      w_dim=int(kw["w_dim"]),
      img_resolution=int(kw["img_resolution"]),
      c_dim=int(kw.get("c_dim", 0)),
      img_channels=int(kw.get("img_channels", 3)),
      mapping_layers=num_map,
      mapping_lr=lr,
      channel_base=int(syn_kw["channel_base"]),
      channel_max=int(syn_kw["channel_max"]),
      num_layers=int(syn_kw["num_layers"]),
      num_critical=int(syn_kw["num_critical"]),
      first_cutoff=float(syn_kw["first_cutoff"]),
      first_stopband=float(syn_kw["first_stopband"]),
      last_stopband_rel=float(syn_kw["last_stopband_rel"]),
      margin_size=int(syn_kw["margin_size"]),
      output_scale=float(syn_kw["output_scale"]),
      conv_kernel=int(syn_kw["conv_kernel"]),
      filter_size=int(syn_kw["filter_size"]),
      lrelu_upsampling=int(syn_kw["lrelu_upsampling"]),
      use_radial_filters=bool(syn_kw["use_radial_filters"]),
      conv_clamp=None if clamp is None else float(clamp),
    )
  except (TypeError, ValueError) as e:
    raise CheckpointError(f"{path}: unsupported StyleGAN3 configuration: {e}") from None


def check_layers(table, syn, path):
  """Raises CheckpointError unless the stored synthesis layers match table = (input spec, layer specs)."""
  inp, table = table
  names = list(syn.attrs.get("layer_names") or [])
  if names != [s.name for s in table]:
    raise CheckpointError(
      f"{path}: StyleGAN3 layers {names} differ from the constructor's {[s.name for s in table]} for this config"
    )
  got = syn.submodule("input").attrs
  if int(got.get("channels", inp.channels)) != inp.channels or list(np.ravel(got.get("size", inp.size)))[:1] != [
    inp.size
  ]:
    raise CheckpointError(
      f"{path}: StyleGAN3 input layer has channels/size {got.get('channels')}/{got.get('size')}, "
      f"expected {inp.channels}/{inp.size}"
    )
  for spec in table:
    attrs = syn.submodule(spec.name).attrs
    for a in _CHECKED_ATTRS:
      if a not in attrs:
        continue
      want = getattr(spec, a)
      have = tuple(attrs[a]) if a == "padding" else attrs[a]
      if have != want:
        raise CheckpointError(f"{path}: StyleGAN3 layer {spec.name}: {a} is {have}, the constructor gives {want}")


def params_from_state_dict(cfg, table, sd, path, prefix=""):
  """Torch-named tensors of a StyleGAN3 G -> (params, buffers) of numpy arrays.

  cfg: the StyleGAN3 config (object with its fields); table: its (input spec, layer specs).
  """
  t = TensorSource(sd, path, prefix)
  inp, table = table
  dims = [cfg.z_dim + cfg.embed_dim] + [cfg.w_dim] * cfg.mapping_layers
  mapping = {
    "fc": [
      {"w": t.get(f"mapping.fc{i}.weight", (o, d)).T.copy(), "b": t.get(f"mapping.fc{i}.bias", (o,))}
      for i, (d, o) in enumerate(zip(dims[:-1], dims[1:]))
    ]
  }
  if cfg.c_dim:
    mapping["embed"] = {
      "w": t.get("mapping.embed.weight", (cfg.w_dim, cfg.c_dim)).T.copy(),
      "b": t.get("mapping.embed.bias", (cfg.w_dim,)),
    }
  c0 = inp.channels
  syn_in = {
    "affine_w": t.get("synthesis.input.affine.weight", (4, cfg.w_dim)).T.copy(),
    "affine_b": t.get("synthesis.input.affine.bias", (4,)),
    "weight": t.get("synthesis.input.weight", (c0, c0)).T.copy(),
  }
  buf_in = {
    "freqs": t.get("synthesis.input.freqs", (c0, 2)),
    "phases": t.get("synthesis.input.phases", (c0,)),
    "transform": t.get("synthesis.input.transform", (3, 3)),
  }
  layers, mags, ups, downs = [], [], [], []
  for spec in table:
    mod = f"synthesis.{spec.name}"
    k = spec.conv_kernel
    layers.append(
      {
        "affine_w": t.get(f"{mod}.affine.weight", (spec.in_channels, cfg.w_dim)).T.copy(),
        "affine_b": t.get(f"{mod}.affine.bias", (spec.in_channels,)),
        "weight": oihw_to_hwio(t.get(f"{mod}.weight", (spec.out_channels, spec.in_channels, k, k))),
        "bias": t.get(f"{mod}.bias", (spec.out_channels,)),
      }
    )
    mags.append(t.get(f"{mod}.magnitude_ema", ()))
    ups.append(_filter(t, f"{mod}.up_filter", spec.up_taps, False))
    downs.append(_filter(t, f"{mod}.down_filter", spec.down_taps, spec.down_radial))
  params = {"mapping": mapping, "synthesis": {"input": syn_in, "layers": layers}}
  buffers = {
    "w_avg": t.get("mapping.w_avg", (cfg.w_dim,)),
    "input": buf_in,
    "magnitude_ema": mags,
    "up_filters": ups,
    "down_filters": downs,
  }
  return params, buffers


def _filter(t, key, taps, radial):
  if taps == 1:
    if key in t:
      raise CheckpointError(f"{t.path}: '{t.prefix}{key}' is stored but the layer has no filter (1 tap)")
    return np.ones((1,), np.float32)
  return t.get(key, (taps, taps) if radial else (taps,))


def read_module(G, key, path):
  """(config dict, params(cfg, table), info) for the G_ema module of a stylegan3 snapshot."""
  config = config_from_module(G, path)
  syn, sd = G.submodule("synthesis"), G.state_dict()

  def params(cfg, table):
    check_layers(table, syn, path)
    return params_from_state_dict(cfg, table, sd, path)

  variant = "R" if config["use_radial_filters"] else "T"
  return config, params, {"format": "NVIDIA stylegan3 pickle", "network": key, "variant": variant}
