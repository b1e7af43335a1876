"""Exemplar bank from a classifier, resumable attribute checks, summary table, ToyFaces regions, binary."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from ss_jax.dci import attribute_bank as ab
from ss_jax.dci import attribute_summary
from ss_jax.dci import sampling as dci_sampling
from ss_jax.runtime import jobs
from ss_jax import save_generator

import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _colour_logits(x):
  """Stand-in classifier: 3 image statistics of (B, H, W, 3) images in [-1, 1]."""
  return jnp.stack(
    [
      x[..., 0].mean((1, 2)),
      x[..., 1].mean((1, 2)) - x[..., 2].mean((1, 2)),
      x[:, :8, :, 2].mean((1, 2)) - x[:, 8:, :, 2].mean((1, 2)),
    ],
    axis=1,
  )


NAMES = ("red", "green_blue", "top_bottom")
CLF = ab.AttributeClassifier(
  dci_sampling.AttributeFunction(_colour_logits, NAMES, "colour", traceable=True),
  {"red": ("hair",), "green_blue": None, "top_bottom": ("hat",)},
  np.ones(3, bool),
)
CS = ab.CheckSettings(
  num_eval=16, num_exemplars=10, num_reference=40, sizes=(2, 5, 10, 30), num_draws=20, alphas=(10.0, 30.0), edit_top=2
)


@pytest.fixture(scope="module")
def g():
  return tiny.tiny_generator()


def test_edits_need_a_classifier_images_and_strengths():
  assert ab.has_edits(CLF, CS)
  assert not ab.has_edits(None, CS)
  assert not ab.has_edits(CLF, ab.CheckSettings(**{**CS.__dict__, "alphas": ()}))
  assert not ab.has_edits(CLF, ab.CheckSettings(**{**CS.__dict__, "num_eval": 0}))


def test_parse_targets():
  assert ab.parse_targets("all", NAMES) == [0, 1, 2]
  assert ab.parse_targets("top_bottom,0", NAMES) == [2, 0]
  with pytest.raises(ValueError, match="unknown attribute 'hat'"):
    ab.parse_targets("hat", NAMES)


def test_detection_without_rendering_and_table(g):
  """A planted channel in bank styles is found with and without a restriction that holds it."""
  rng = np.random.default_rng(0)
  s = rng.standard_normal((1000, g.num_style_channels))
  logits = rng.standard_normal((1000, 3))
  logits[:, 0] += 2.0 * s[:, g.layout[3].offset + 5]
  cs = ab.CheckSettings(num_eval=0, num_exemplars=20, num_reference=100, sizes=(2, 10, 30), num_draws=20)
  d = ab.detect_attribute(
    s, logits, 0, g.layout, np.zeros(s.shape[1]), np.ones(s.shape[1]), cs, local_channels=["3_5", "0_1", "5_2"]
  )
  assert d["ref_all"] == d["ref_local"] == d["top_all"][0] == g.layout[3].offset + 5
  assert d["num_local"] == 3 and d["acc_all"][-1] == 1.0 and d["acc_local"][0] >= d["acc_all"][0]
  row = attribute_summary.summary_row(d, "red", g.layout, NAMES, CLF.regions)
  assert row["reference_all"] == "3_5" and row["accuracy_all"]["10"] == d["acc_all"][1]
  assert row["accuracy_all"]["5"] is None and "edits" not in row  # 5 not among the sizes; no edits
  table = attribute_summary.markdown_table([row])
  assert table.splitlines()[2].startswith("| red | hair (3) | 3_5 |") and "best edit" not in table


def test_bank_and_checks_resume_with_the_same_result(g, tmp_path):
  bank = ab.make_bank(tmp_path, g, 240, CLF.fn, seed=5, samples_per_shard=100)
  res = ab.run(g, tmp_path, bank, [0, 2], list(NAMES), CS, CLF, regions=CLF.regions, log=lambda *a: None)
  rows, curves = res["rows"], res["curves"]
  # The bank is the DCI sampling job: styles of seeds 5.., logits of their renders.
  s = dci_sampling.read_array(bank.codes, "s")
  want = dci_sampling.attribute_logits(g, s[:20], CLF.fn)
  np.testing.assert_allclose(dci_sampling.read_array(bank.logits, "logits")[:20], want, rtol=1e-4, atol=1e-5)
  assert [r["attribute"] for r in rows] == ["red", "top_bottom"] and curves[0] is None  # no verified file
  red = rows[0]
  assert len(red["edits"]) == len(CS.alphas) * len({e["channel"] for e in red["edits"]})
  assert red["best_edit"]["target"] == max(e["target"] for e in red["edits"]) or red["single_channel"]
  shard = jobs.load_npz(tmp_path / ab.CHECK_JOB / "shard_00000.npz")
  assert shard["edit_target"].shape == (len(shard["edit_channels"]), 2)
  # Pushing the top channel of the reddest exemplars towards them makes images redder.
  assert shard["edit_target"][0, 1] > 0
  rnd = jobs.load_npz(tmp_path / ab.RANDOM_JOB / "shard_00000.npz")
  assert rnd["edited"].shape == (ab.NUM_RANDOM, 2, CS.num_eval, 3) and red["random_channels"]["count"] == 8
  assert red["random_channels"]["alpha"] == abs(red["best_edit"]["alpha"])
  # A killed run (one attribute and the baseline lost) resumes to the same rows; other settings are refused.
  os.remove(tmp_path / ab.CHECK_JOB / "shard_00001.npz")
  os.remove(tmp_path / ab.RANDOM_JOB / "shard_00000.npz")
  again = ab.run(
    g,
    tmp_path,
    ab.make_bank(tmp_path, g, 240, CLF.fn, seed=5, samples_per_shard=100),
    [0, 2],
    list(NAMES),
    CS,
    CLF,
    regions=CLF.regions,
    log=lambda *a: None,
  )
  assert json.dumps(again["rows"]) == json.dumps(rows)
  with pytest.raises(jobs.SettingsMismatch, match="num_exemplars"):
    other = ab.CheckSettings(**{**CS.__dict__, "num_exemplars": 9})
    ab.run(g, tmp_path, bank, [0, 2], list(NAMES), other, CLF, log=lambda *a: None)


def test_toyfaces_regions_follow_the_attribute_table():
  from ss_jax.toyfaces import regions

  r = regions.attribute_regions()
  assert r["hair_color"] == ("eyebrow", "hair") and r["glasses"] == ("others",)
  assert r["clothes_color"] == ("clothes", "others") and r["head_x"] is None and r["skin_tone"] is None
  assert len(r) == 26


def test_binary_smoke_toyfaces_classifier_on_a_tiny_generator(g, tmp_path):
  save_generator(g, tmp_path / "gen")
  (tmp_path / "verified.json").write_text(
    json.dumps({"categories": [{"category": "hair", "verified": [{"name": "2_3"}, {"name": "3_1"}, {"name": "5_0"}]}]})
  )
  args = [
    sys.executable,
    "-m",
    "experiments.attribute_channels",
    f"--checkpoint={tmp_path / 'gen'}",
    "--classifier=toyfaces",
    "--attribute=hair_color,head_x",
    "--bank_size=200",
    "--num_exemplars=8",
    "--num_reference=30",
    "--num_eval=8",
    "--alphas=10",
    "--draws=10",
    "--psi=1",
    "--samples_per_shard=100",
    f"--verified={tmp_path / 'verified.json'}",
    f"--workdir={tmp_path / 'out'}",
  ]
  p = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
  assert "single channel controls" in p.stdout and "| hair_color | eyebrow+hair (3) |" in p.stdout
  d = json.loads((tmp_path / "out" / "attribute_channels.json").read_text())
  assert [r["attribute"] for r in d["attributes"]] == ["hair_color", "head_x"]
  assert d["mean_curve"]["attributes"] == 1 and d["attributes"][1]["reference_local"] is None
  for name in ("attribute_channels.md", "accuracy_curve.png", "curve_hair_color.png", "curve_head_x.png"):
    assert (tmp_path / "out" / name).is_file(), name
  p = subprocess.run(
    args[:5] + ["--attribute=hat_size", f"--workdir={tmp_path / 'out'}"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert p.returncode != 0 and "unknown attribute 'hat_size'" in p.stderr.strip().splitlines()[-1]
  # --logits: the bank's logits from a file (row i = seed bank_seed + i), detection only.
  np.save(tmp_path / "logits.npy", np.random.default_rng(0).standard_normal((200, 2)).astype(np.float32))
  p = subprocess.run(
    args[:4]
    + [
      f"--logits={tmp_path / 'logits.npy'}",
      "--attribute=1",
      "--bank_size=200",
      "--num_exemplars=8",
      "--num_reference=30",
      "--draws=10",
      "--psi=1",
      "--samples_per_shard=100",
      f"--workdir={tmp_path / 'lg'}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
  rows = json.loads((tmp_path / "lg" / "attribute_channels.json").read_text())["attributes"]
  assert [r["attribute"] for r in rows] == ["attr_1"] and "edits" not in rows[0]
