"""Max abs errors of ss-jax's StyleGAN3 against the official references (fixtures s1, s2).

python -m benchmarks.parity_sg3     # prints the README's StyleGAN3 parity rows
"""

import pathlib

import numpy as np

from ss_jax.stylegan2.checkpoint import load_checkpoint
from ss_jax.stylegan3 import generator as sg3

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stylegan3"


def _err(a, ref):
  return float(np.max(np.abs(np.asarray(a) - ref)))


def main():
  print("| fixture | images psi 1 / 0.7 / W+ / edit / transform | input features | styles | w / truncated w |")
  print("|---|---|---|---|---|")
  for name, what in (("s1", "StyleGAN3-T, 32px"), ("s2", "StyleGAN3-R, 32px, conditional")):
    g, _ = load_checkpoint(FIXTURES / name / f"{name}.pkl")
    r = dict(np.load(FIXTURES / name / "ref.npz"))
    c = r.get("c")
    img = lambda s, t=None: np.transpose(np.asarray(g.synthesis(s, input_transform=t)), (0, 3, 1, 2))
    st = g.styles(r["ws"])
    edit = list(st)
    edit[8] = edit[8].at[:, 3].add(5.0)
    imgs = [
      _err(img(st), r["img_psi1"]),
      _err(img(g.styles(r["ws_trunc"])), r["img_psi07"]),
      _err(img(g.styles(r["ws_mix"])), r["img_ws_mix"]),
      _err(img(edit), r["img_edit"]),
      _err(img(st, r["input_transform"]), r["img_transform"]),
    ]
    names = sorted(k for k in r if k.startswith("style_") and k[6:8].isdigit() and not k.endswith("psi07"))
    styles = max(_err(a, r[k]) for a, k in zip(st, names))
    s0 = g.styles(r["ws"][:1])[0]
    feats = max(
      _err(np.transpose(np.asarray(sg3.input_layer(g.config, g.params, g.buffers, s0, t)), (0, 3, 1, 2)), r[k])
      for k, t in (("input_features_sample0", None), ("input_features_transform_sample0", r["input_transform"]))
    )
    w = _err(g.mapping(r["z"], c), r["ws"])
    wt = _err(g.mapping(r["z"], c, psi=0.7), r["ws_trunc"])
    print(
      f"| {name} ({what}) | {' / '.join(f'{e:.1e}' for e in imgs)} | {feats:.1e} | {styles:.1e} | {w:.1e} / {wt:.1e} |"
    )


if __name__ == "__main__":
  main()
