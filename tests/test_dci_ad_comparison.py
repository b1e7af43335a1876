"""The S-vs-W comparison and the AD binary, end to end on a tiny generator with a custom classifier."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ss_jax.dci import ad_comparison
from ss_jax.stylespace import manipulate
from ss_jax.stylegan2 import sampling
from ss_jax import save_generator
from ss_jax.dci import ad_edits

import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["a0", "a1", "a2", "a3"]


def _features(images):
  """(N, H, W, 3) -> (N, 12) mean colour of each image quadrant."""
  x = np.asarray(images, np.float64)
  h, w = x.shape[1] // 2, x.shape[2] // 2
  return np.concatenate([x[:, i : i + h, j : j + w].mean((1, 2)) for i in (0, h) for j in (0, w)], axis=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """A saved tiny generator and an importable classifier: random projections of quadrant colours,
  centred on the median of 64 samples, so every attribute has both classes."""
  d = tmp_path_factory.mktemp("adcmp")
  g = tiny.tiny_generator(5)
  save_generator(g, d / "gen")
  feats = _features(manipulate.render(g, sampling.styles_from_seeds(g, range(64), psi=1.0), batch_size=64))
  m = np.random.default_rng(0).normal(size=(12, len(NAMES)))
  bias = np.median(feats @ m, axis=0)
  (d / "adtestclf.py").write_text(
    "import numpy as np\n"
    f"M = np.array({m.tolist()})\nB = np.array({bias.tolist()})\n"
    "def logits(images):\n"
    "  x = np.asarray(images, np.float64)\n"
    "  h, w = x.shape[1] // 2, x.shape[2] // 2\n"
    "  f = np.concatenate([x[:, i:i + h, j:j + w].mean((1, 2)) for i in (0, h) for j in (0, w)], axis=1)\n"
    "  return (f @ M - B).astype(np.float32)\n"
  )
  np.save(d / "dir.npy", np.random.default_rng(1).normal(size=g.config.w_dim))
  return g, d


def _run(module, d, *args):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, str(d)]), JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  return subprocess.run(
    [
      sys.executable,
      "-m",
      module,
      f"--checkpoint={d / 'gen'}",
      "--classifier=adtestclf:logits",
      f"--attribute_names={','.join(NAMES)}",
      *args,
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )


ARGS = [
  f"--reliable={','.join(NAMES)}",
  "--num_population=64",
  "--num_select=4",
  "--num_eval=4",
  "--alphas=1,4",
  "--s_candidates=2",
  "--num_components=2",
  "--row_ranges=all,0-2",
  "--num_exemplars=8",
  "--matches=0.1,0.2",
  "--batch_size=32",
]


@pytest.fixture(scope="module")
def comparison(setup):
  _, d = setup
  p = _run("experiments.ad_comparison", d, f"--workdir={d / 'cmp'}", *ARGS)
  return p, d


def test_comparison_binary_smoke(comparison):
  p, d = comparison
  assert p.returncode == 0, p.stderr[-3000:]
  res = json.loads((d / "cmp" / "comparison.json").read_text())
  assert res["targets"] and len(res["rows"]) == len(res["targets"]) * len(ad_comparison.METHODS)
  for r in res["rows"]:
    assert len(r["summary"]["mean_ad"]) == 2 and r["method"] in ad_comparison.METHODS
  assert res["num_candidates"] == {"S (per attribute)": 2, "GANSpace": 4, "SeFa": 4}
  md = (d / "cmp" / "comparison.md").read_text()
  assert "| attribute | S best |" in md and "mean-AD at target change 0.2 σ" in md
  assert all((d / "cmp" / f"ad_{t}.png").is_file() for t in res["targets"])


@pytest.mark.slow
def test_comparison_binary_resume(comparison):
  _, d = comparison
  args = [f"--workdir={d / 'cmp'}", *ARGS]
  res = json.loads((d / "cmp" / "comparison.json").read_text())
  # Rerun: every shard exists, nothing is recomputed, same numbers.
  p2 = _run("experiments.ad_comparison", d, *args)
  assert p2.returncode == 0, p2.stderr[-3000:]
  assert "renders (" not in p2.stderr  # no progress lines: nothing computed
  assert json.loads((d / "cmp" / "comparison.json").read_text())["rows"] == res["rows"]
  p3 = _run("experiments.ad_comparison", d, *args[:-1], "--batch_size=32", "--num_eval=5")
  assert p3.returncode != 0 and "different settings" in p3.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_ad_binary_channels_direction_interfacegan(setup):
  g, d = setup
  p = _run(
    "experiments.attribute_dependency",
    d,
    f"--workdir={d / 'ad'}",
    "--attribute=a1",
    "--channels=0_3,2_1+2_2",
    f"--directions={d / 'dir.npy'}",
    "--rows=0-1",
    "--interfacegan",
    "--alphas=1,2",
    "--num_images=4",
    "--num_population=64",
    "--batch_size=32",
  )
  assert p.returncode == 0, p.stderr[-3000:]
  out = json.loads((d / "ad" / "ad.json").read_text())
  assert [r["edit"] for r in out["results"]] == ["S 0_3", "S 2_1+2_2", "W dir", "InterFaceGAN"]
  assert out["results"][2]["meta"]["rows"] == [0, 1] and out["plots"] == ["ad_a1.png"]
  assert out["settings"]["others"] is None  # a custom classifier: every other attribute counts
  p = _run("experiments.attribute_dependency", d, f"--workdir={d / 'bad'}", "--attribute=nope")
  assert p.returncode != 0 and "unknown attribute" in p.stderr.strip().splitlines()[-1]


def test_edit_names_carry_the_sign():
  """An edit's name identifies its direction: the same channel with opposite signs gets two names."""
  g = tiny.tiny_generator(0)
  std = np.ones(g.num_style_channels)
  plus, minus = ad_edits.channel_edit(g.layout, ["2_5"], std), ad_edits.channel_edit(g.layout, ["2_5"], std, sign=-1.0)
  assert (plus.name, minus.name) == ("S 2_5", "S 2_5 (-)")
  neg = ad_comparison._negated(minus)
  assert neg.name == "S 2_5" and np.array_equal(neg.direction, plus.direction)
  assert len(ad_comparison._unique([plus, neg, minus])) == 2
  with pytest.raises(ValueError, match="both named"):
    ad_comparison._unique([plus, ad_edits.Edit("S 2_5", "s", minus.direction)])
