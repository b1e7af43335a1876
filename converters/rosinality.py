"""rosinality/stylegan2-pytorch `.pt` checkpoints -> config dict + numpy params.

No config is stored in these files: resolution, mapping depth, style_dim and the
channel table follow from tensor names and shapes. The mapping lr multiplier
(`lr_mlp`) is not stored either; 0.01, the value of every released model and of
train.py's default, is assumed. Checkpoints without `latent_avg` (train.py's) give w_avg None:
the library estimates it from the mapping network (ss_jax.stylegan2.checkpoint).
"""

import numpy as np

from converters.common import TensorSource, check_fir
from converters.io import CheckpointError, read_torch_file

LR_MLP = 0.01


def config_from_state_dict(sd, path):
  """GeneratorConfig kwargs (dict) from tensor names and shapes."""
  if "input.input" not in sd or "style.1.weight" not in sd:
    raise CheckpointError(
      f"{path}: not a rosinality generator state dict (expected 'input.input' and 'style.1.weight')"
    )
  n_mlp = sum(1 for k in sd if k.startswith("style.") and k.endswith(".weight"))
  style_dim = int(sd["style.1.weight"].shape[1])
  n_convs = sum(1 for k in sd if k.startswith("convs.") and k.endswith(".conv.weight"))
  res = 4 * 2 ** (n_convs // 2)
  channels = [int(sd["conv1.conv.weight"].shape[1])]
  for i in range(n_convs // 2):
    channels.append(int(sd[f"convs.{2 * i + 1}.conv.weight"].shape[1]))
  img_channels = int(sd["to_rgb1.conv.weight"].shape[1])
  return dict(
    z_dim=style_dim,
    w_dim=style_dim,
    img_resolution=res,
    channels=tuple(channels),
    img_channels=img_channels,
    mapping_layers=n_mlp,
    mapping_lr=LR_MLP,
    flavour="rosinality",
  )


def _module_name(L):
  """rosinality module of a style layer: conv1/to_rgb1 at 4 px, then convs.{i} and to_rgbs.{j}."""
  if L.resolution == 4:
    return "conv1" if L.kind == "conv" else "to_rgb1"
  j = L.resolution.bit_length() - 4  # block index from 8 px
  if L.kind == "torgb":
    return f"to_rgbs.{j}"
  return f"convs.{2 * j + (0 if L.up else 1)}"


def params_from_state_dict(cfg, layout, sd, path, prefix=""):
  """g_ema's tensors -> (params, buffers) of numpy arrays (w_avg zeros); cfg, layout as in nvidia."""
  t = TensorSource(sd, path, prefix)
  sdim = cfg.w_dim
  fc = [
    {"w": t.get(f"style.{i}.weight", (sdim, sdim)).T.copy(), "b": t.get(f"style.{i}.bias", (sdim,))}
    for i in range(1, cfg.mapping_layers + 1)
  ]
  layers, noise = [], []
  for L in layout:
    mod = _module_name(L)
    k = 3 if L.kind == "conv" else 1
    w = t.get(f"{mod}.conv.weight", (1, L.out_channels, L.channels, k, k))[0]
    p = {
      "affine_w": t.get(f"{mod}.conv.modulation.weight", (L.channels, sdim)).T.copy(),
      "affine_b": t.get(f"{mod}.conv.modulation.bias", (L.channels,)),
      "weight": np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0))),
    }
    if L.kind == "conv":
      p["bias"] = t.get(f"{mod}.activate.bias", (L.out_channels,))
      p["noise_strength"] = t.get(f"{mod}.noise.weight", (1,)).reshape(())
      noise.append(t.get(f"noises.noise_{len(noise)}", (1, 1, L.resolution, L.resolution))[0, 0])
      if L.up and f"{mod}.conv.blur.kernel" in t:
        check_fir(path, prefix + f"{mod}.conv.blur.kernel", t.get(f"{mod}.conv.blur.kernel"), scale=4.0)
    else:
      p["bias"] = t.get(f"{mod}.bias", (1, L.out_channels, 1, 1)).reshape(-1)
    layers.append(p)
  const = t.get("input.input", (1, cfg.channels_at(4), 4, 4))[0]
  synthesis = {"const": np.transpose(const, (1, 2, 0)).copy(), "layers": layers}
  return {"mapping": {"fc": fc}, "synthesis": synthesis}, {"w_avg": np.zeros((sdim,), np.float32), "noise": noise}


def read(path):
  """Read a rosinality checkpoint ({'g_ema', 'latent_avg', ...} or train.py's).

  Returns (config dict, params(cfg, layout) -> (params, buffers), info dict); buffers["w_avg"] is
  the checkpoint's latent_avg, or None when it has none.
  """
  obj = read_torch_file(path)
  if not isinstance(obj, dict) or "g_ema" not in obj:
    keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"{path}: expected a rosinality checkpoint with 'g_ema', found {keys}")
  sd = obj["g_ema"]
  config = config_from_state_dict(sd, path)
  info = {"format": "rosinality stylegan2-pytorch checkpoint", "network": "g_ema"}
  has_avg = obj.get("latent_avg") is not None
  if has_avg:
    info["w_avg"] = "latent_avg from the checkpoint"

  def params(cfg, layout):
    p, buffers = params_from_state_dict(cfg, layout, sd, path)
    buffers["w_avg"] = TensorSource(obj, path).get("latent_avg", (cfg.w_dim,)).reshape(-1) if has_avg else None
    return p, buffers

  return config, params, info
