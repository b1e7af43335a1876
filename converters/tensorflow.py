"""Original NVIDIA TensorFlow StyleGAN2 pickles (tuple G, D, Gs) -> config dict + numpy params.

The network is rebuilt from `static_kwargs` and variable shapes; the embedded
build source is never executed. Numerics follow NVIDIA's PyTorch port of these
files (stylegan2-ada-pytorch legacy.py), which is what the references use.
"""

import numpy as np

from converters.common import TensorSource
from converters.io import CheckpointError, read_tf_pickle

TF_DEFAULTS = dict(
  latent_size=512,
  dlatent_size=512,
  mapping_layers=8,
  mapping_fmaps=512,
  mapping_lrmul=0.01,
  fmap_base=16384,
  fmap_max=512,
  fmap_min=1,
  fmap_decay=1.0,
  architecture="skip",
  resample_kernel=[1, 3, 3, 1],
  num_channels=3,
  label_size=0,
)


def _pick_gs(obj, path):
  nets = obj if isinstance(obj, (tuple, list)) else (obj,)
  if len(nets) == 3:
    return nets[2]
  if len(nets) == 1:
    return nets[0]
  raise CheckpointError(f"{path}: expected a (G, D, Gs) tuple of TF networks, got {len(nets)} objects")


def _kwargs(net):
  kw = dict(TF_DEFAULTS)
  kw.update(net.static_kwargs or {})
  return kw


def config_from_network(gs, path):
  kw = _kwargs(gs)
  if int(kw.get("label_size", 0)):
    raise CheckpointError(f"{path}: conditional TF generators (label_size > 0) are not supported")
  if kw.get("architecture") not in ("skip", "resnet", "orig"):
    raise CheckpointError(f"{path}: unsupported TF architecture {kw.get('architecture')!r}")
  res = int(kw["resolution"]) if "resolution" in kw else None
  if res is None:
    raise CheckpointError(f"{path}: Gs static_kwargs has no 'resolution'")
  mapping = gs.components.get("mapping") if gs.components else None
  mkw = dict(kw)
  if mapping is not None:
    mkw.update(_kwargs(mapping))
  log2 = int(np.log2(res))

  def nf(stage):  # TF's channel rule: fmap_base / 2^(stage * decay), clipped.
    return int(np.clip(int(kw["fmap_base"] / (2.0 ** (stage * kw["fmap_decay"]))), kw["fmap_min"], kw["fmap_max"]))

  channels = tuple(nf(k - 1) for k in range(2, log2 + 1))
  fir = tuple(float(v) for v in kw["resample_kernel"])
  if len(fir) != 4:
    raise CheckpointError(f"{path}: resample_kernel {fir} is not a 4-tap filter")
  return dict(
    z_dim=int(mkw["latent_size"]),
    w_dim=int(mkw["dlatent_size"]),
    img_resolution=res,
    channels=channels,
    img_channels=int(kw["num_channels"]),
    mapping_layers=int(mkw["mapping_layers"]),
    mapping_hidden=int(mkw["mapping_fmaps"]),
    mapping_lr=float(mkw["mapping_lrmul"]),
    architecture=kw["architecture"],
    flavour="nvidia",
    fir=fir,
  )


def _tf_name(L):
  r = L.resolution
  if L.kind == "torgb":
    return f"{r}x{r}/ToRGB"
  if r == 4:
    return "4x4/Conv"
  return f"{r}x{r}/Conv0_up" if L.up else f"{r}x{r}/Conv1"


def _variables(gs):
  """All variables of Gs and its components under '<component>/<name>' keys."""
  out = dict(gs.variables)
  for cname, comp in (gs.components or {}).items():
    for k, v in comp.variables.items():
      out[f"{cname}/{k}"] = v
  return out


def params_from_network(cfg, layout, gs, path):
  """Gs's variables -> (params, buffers) of numpy arrays; cfg, layout as in nvidia.params_from_state_dict."""
  t = TensorSource(_variables(gs), path)
  dims = [cfg.z_dim] + [cfg.hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
  fc = [
    {"w": t.get(f"mapping/Dense{i}/weight", (d, o)), "b": t.get(f"mapping/Dense{i}/bias", (o,))}
    for i, (d, o) in enumerate(zip(dims[:-1], dims[1:]))
  ]
  layers, noise = [], []
  for L in layout:
    name = "synthesis/" + _tf_name(L)
    k = 3 if L.kind == "conv" else 1
    w = t.get(f"{name}/weight", (k, k, L.channels, L.out_channels))
    if L.up:  # TF's up-sampling conv correlates with the flipped kernel of torch's transposed conv
      w = np.ascontiguousarray(w[::-1, ::-1])
    p = {
      "affine_w": t.get(f"{name}/mod_weight", (cfg.w_dim, L.channels)),
      # TF adds the constant 1 to the affine output; torch stores it in the bias.
      "affine_b": t.get(f"{name}/mod_bias", (L.channels,)) + np.float32(1),
      "weight": w,
      "bias": t.get(f"{name}/bias", (L.out_channels,)),
    }
    if L.kind == "conv":
      p["noise_strength"] = t.get(f"{name}/noise_strength", ()).reshape(())
      noise.append(t.get(f"synthesis/noise{len(noise)}", (1, 1, L.resolution, L.resolution))[0, 0])
    layers.append(p)
  const = t.get("synthesis/4x4/Const/const", (1, cfg.channels_at(4), 4, 4))[0]
  synthesis = {"const": np.transpose(const, (1, 2, 0)).copy(), "layers": layers}
  if cfg.architecture == "resnet":
    synthesis["skips"] = [
      {
        "weight": t.get(
          f"synthesis/{2**k}x{2**k}/Skip/weight", (1, 1, cfg.channels_at(2 ** (k - 1)), cfg.channels_at(2**k))
        )
      }
      for k in range(3, cfg.log2_res + 1)
    ]
  w_avg = t.get("dlatent_avg", (cfg.w_dim,))
  return {"mapping": {"fc": fc}, "synthesis": synthesis}, {"w_avg": w_avg, "noise": noise}


def read(path):
  """Read a TF StyleGAN2 network pickle -> (config dict, params(cfg, layout), info dict) for Gs."""
  gs = _pick_gs(read_tf_pickle(path), path)
  info = {"format": "NVIDIA TensorFlow StyleGAN2 pickle", "network": getattr(gs, "name", "Gs")}
  return config_from_network(gs, path), lambda cfg, layout: params_from_network(cfg, layout, gs, path), info
