"""NVIDIA stylegan2-ada-pytorch / stylegan3 (StyleGAN2 networks) pickles -> config dict + numpy params."""

import numpy as np

from converters import nvidia_sg3
from converters.common import TensorSource, check_fir, oihw_to_hwio
from converters.io import CheckpointError, read_nvidia_pickle


def _pick_generator(obj, path):
  if not isinstance(obj, dict):
    raise CheckpointError(f"{path}: expected a dict snapshot with 'G_ema', got {type(obj).__name__}")
  for key in ("G_ema", "G"):
    if key in obj and obj[key] is not None:
      return key, obj[key]
  raise CheckpointError(f"{path}: no 'G_ema' generator in the pickle (keys: {sorted(obj)})")


def _attr(module, name, default):
  v = module.attrs.get(name, default) if module is not None else default
  return default if v is None else v


def config_from_module(G, path):
  """GeneratorConfig kwargs (dict) from the module's constructor kwargs, cross-checked against tensors."""
  kw = dict(G.init_kwargs)
  missing = [k for k in ("z_dim", "w_dim", "img_resolution") if k not in kw]
  if missing:
    raise CheckpointError(f"{path}: generator has no {missing} in its constructor kwargs")
  sd = G.state_dict()
  map_kw = dict(kw.get("mapping_kwargs") or {})
  syn_kw = dict(kw.get("synthesis_kwargs") or {})
  res = int(kw["img_resolution"])
  num_layers = sum(1 for k in sd if k.startswith("mapping.fc") and k.endswith(".weight"))
  fc0 = G.submodule("mapping.fc0")
  lr = float(_attr(fc0, "bias_gain", map_kw.get("lr_multiplier", 0.01)))
  channels = []
  for k in range(2, int(np.log2(res)) + 1):
    key = "synthesis.b4.const" if k == 2 else f"synthesis.b{2**k}.conv1.weight"
    if key not in sd:
      raise CheckpointError(f"{path}: missing tensor 'G_ema.{key}'")
    channels.append(int(sd[key].shape[0]))
  arch = syn_kw.get("architecture", "skip")
  clamp = syn_kw.get("conv_clamp", None)
  hidden = int(sd["mapping.fc0.weight"].shape[0]) if num_layers > 1 else None
  embed = int(sd["mapping.embed.weight"].shape[0]) if "mapping.embed.weight" in sd else None
  return dict(
    z_dim=int(kw["z_dim"]),
    w_dim=int(kw["w_dim"]),
    c_dim=int(kw.get("c_dim", 0)),
    img_resolution=res,
    img_channels=int(kw.get("img_channels", 3)),
    channels=tuple(channels),
    mapping_layers=num_layers,
    mapping_hidden=hidden,
    mapping_lr=lr,
    embed_features=embed,
    architecture=arch,
    conv_clamp=None if clamp is None else float(clamp),
    flavour="nvidia",
  )


def params_from_state_dict(cfg, layout, sd, path, prefix=""):
  """Torch-named tensors of a StyleGAN2 G (NVIDIA names) -> (params, buffers) of numpy arrays.

  cfg: the generator config (ss_jax GeneratorConfig or any object with its fields); layout: its
  style layers in generator order (objects with name, kind, resolution, channels, out_channels, up).
  """
  t = TensorSource(sd, path, prefix)
  dims = [cfg.z_dim + cfg.embed_dim] + [cfg.hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
  fc = [
    {"w": t.get(f"mapping.fc{i}.weight", (o, d)).T.copy(), "b": t.get(f"mapping.fc{i}.bias", (o,))}
    for i, (d, o) in enumerate(zip(dims[:-1], dims[1:]))
  ]
  mapping = {"fc": fc}
  if cfg.c_dim:
    mapping["embed"] = {
      "w": t.get("mapping.embed.weight", (cfg.embed_dim, cfg.c_dim)).T.copy(),
      "b": t.get("mapping.embed.bias", (cfg.embed_dim,)),
    }
  layers, noise = [], []
  for L in layout:
    mod = f"synthesis.b{L.resolution}.{L.name.split('_')[1]}"
    k = 3 if L.kind == "conv" else 1
    p = {
      "affine_w": t.get(f"{mod}.affine.weight", (L.channels, cfg.w_dim)).T.copy(),
      "affine_b": t.get(f"{mod}.affine.bias", (L.channels,)),
      "weight": oihw_to_hwio(t.get(f"{mod}.weight", (L.out_channels, L.channels, k, k))),
      "bias": t.get(f"{mod}.bias", (L.out_channels,)),
    }
    if L.kind == "conv":
      p["noise_strength"] = t.get(f"{mod}.noise_strength", ())
      noise.append(t.get(f"{mod}.noise_const", (L.resolution, L.resolution)))
      if L.up and f"{mod}.resample_filter" in t:
        check_fir(path, prefix + f"{mod}.resample_filter", t.get(f"{mod}.resample_filter"))
    layers.append(p)
  c4 = cfg.channels_at(4)
  synthesis = {"const": np.transpose(t.get("synthesis.b4.const", (c4, 4, 4)), (1, 2, 0)).copy(), "layers": layers}
  if cfg.architecture == "resnet":
    synthesis["skips"] = [
      {
        "weight": oihw_to_hwio(
          t.get(f"synthesis.b{2**k}.skip.weight", (cfg.channels_at(2**k), cfg.channels_at(2 ** (k - 1)), 1, 1))
        )
      }
      for k in range(3, cfg.log2_res + 1)
    ]
  w_avg = t.get("mapping.w_avg", (cfg.w_dim,))
  return {"mapping": mapping, "synthesis": synthesis}, {"w_avg": w_avg, "noise": noise}


def _check_stylegan2(G, path):
  """One line saying what was found when G is neither a StyleGAN2 nor a StyleGAN3 generator."""
  syn = G.children.get("synthesis")
  if syn is None or "b4" not in syn.children:
    found = f"synthesis children {list(syn.children)[:6]}" if syn is not None else f"children {list(G.children)[:6]}"
    raise CheckpointError(
      f"{path}: unsupported generator '{G.class_name}': not StyleGAN2 (no synthesis.b4) and "
      f"not StyleGAN3 (no synthesis.input with Fourier features); found {found}"
    )


def read(path):
  """Read an NVIDIA PyTorch snapshot pickle (StyleGAN2 or StyleGAN3 networks).

  Returns (config dict, params(cfg, layout), info dict); a StyleGAN3 network's config dict has
  "family": "stylegan3" (see converters.nvidia_sg3.read_module for its params function).
  """
  snap = read_nvidia_pickle(path)
  key, G = _pick_generator(snap, path)
  if nvidia_sg3.looks_like_stylegan3(G):
    return nvidia_sg3.read_module(G, key, path)
  _check_stylegan2(G, path)
  sd = G.state_dict()
  info = {"format": "NVIDIA stylegan2-ada-pytorch pickle", "network": key}
  return config_from_module(G, path), lambda cfg, layout: params_from_state_dict(cfg, layout, sd, path), info
