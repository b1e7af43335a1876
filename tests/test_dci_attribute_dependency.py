"""Attribute dependency: the metric by hand, curve matching, and the sharded job on a linear classifier.

The end-to-end check uses an edit whose effect on the image is known in closed form: the
last layer is a toRGB layer, linear in its style, so moving its channel c by delta changes
every pixel by delta * x_c(pixel) * gain * w_c, with w_c (3,) the channel's RGB weights. A
linear "classifier" that reads the image along colours orthogonal to w_c therefore cannot
see the edit (AD 0), and one that reads 0.5 w_c + u sees exactly half the target's change.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from ss_jax.dci import ad_edits, ad_population
from ss_jax.dci import attribute_dependency as ad
from ss_jax.dci import sampling as dci_sampling
from ss_jax.runtime import line_plot

import tiny


def test_ad_curves_by_hand():
  base = np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, -1.0, 0.5]])
  # K = 2 strengths; target 0; changes chosen by hand.
  delta = np.array([[[2.0, 0.5, -1.0, 0.0], [4.0, 1.0, -2.0, 0.0]], [[1.0, -0.5, 0.0, 2.0], [2.0, -1.0, 0.0, 4.0]]])
  sd = np.array([2.0, 0.5, 1.0, 4.0])
  r = ad.ad_curves(base, base[:, None] + delta, sd, target=0)
  # |delta| / sd of the others: image 0: [1, 1, 0] / [2, 2, 0]; image 1: [1, 0, .5] / [2, 0, 1].
  np.testing.assert_allclose(r["target_change"], [0.75, 1.5])
  np.testing.assert_allclose(r["mean_ad"], [(2 / 3 + 1.5 / 3) / 2, (4 / 3 + 3 / 3) / 2])
  np.testing.assert_allclose(r["max_ad"], [1.0, 2.0])
  r2 = ad.ad_curves(base, base[:, None] + delta, sd, target=0, others=[True, False, True, True])
  np.testing.assert_allclose(r2["max_ad"], [(1.0 + 0.5) / 2, (2.0 + 1.0) / 2])  # attribute 1 ignored
  with pytest.raises(ValueError, match="no other"):
    ad.ad_curves(base, base[:, None] + delta, sd, target=0, others=[True, False, False, False])


def test_at_target_interpolates_first_crossing():
  alphas = [1, 2, 4]
  tc = [0.5, 1.5, 1.0]  # crosses 1.0 between alpha 1 and 2, again later (ignored)
  v = [0.1, 0.3, 9.0]
  val, a = ad.at_target(alphas, tc, v, 1.0)
  assert np.isclose(val, 0.2) and np.isclose(a, 1.5)
  val, a = ad.at_target(alphas, tc, v, 0.25)  # from the unedited origin (0, 0)
  assert np.isclose(val, 0.05) and np.isclose(a, 0.5)
  assert np.isnan(ad.at_target(alphas, tc, v, 2.0)[0])
  assert np.isnan(ad.at_target([-1, 1], [5.0, -1.0], [1, 1], 1.0)[0])  # negative strengths ignored


def _linear_classifier(g):
  """Attributes: [target: w_c . rgb, blind: u . rgb (u _|_ w_c), leak: (0.5 w_c + u) . rgb], summed."""
  last = g.layout[-1]
  assert last.kind == "torgb"
  wc = np.asarray(g.params["synthesis"]["layers"][-1]["weight"][0, 0, 0], np.float64)  # channel 0
  u = np.cross(wc, [0.3, -1.0, 0.7])
  u = u / np.linalg.norm(u) * np.linalg.norm(wc)
  m = jnp.asarray(np.stack([wc, u, 0.5 * wc + u], axis=1), jnp.float32)  # (3, A)

  def fn(images):
    return jnp.einsum("bhwc,ca->ba", images, m, precision="highest")

  return dci_sampling.AttributeFunction(fn, ("target", "blind", "leak"), "linear-test", traceable=True), last


def test_job_on_linear_classifier_known_answer(tmp_path):
  g = tiny.tiny_generator(3)
  attr_fn, last = _linear_classifier(g)
  pop = ad_population.population(tmp_path / "job", g, attr_fn, 64, seed=1000, samples_per_shard=32, batch_size=32)
  sd = ad_population.logit_std(pop["logits"])
  std_s = pop["s"].std(0)
  edits = [
    ad_edits.channel_edit(g.layout, [last.offset], std_s),
    ad_edits.channel_edit(g.layout, [last.offset], std_s, sign=-1.0, name="minus"),
  ]
  alphas = [1.0, 3.0]
  job = ad.make_job(tmp_path / "job", "heldout", g, attr_fn, range(5), edits, alphas, images_per_shard=2)
  assert job.num_shards == 3
  base, edited = ad.run_and_read(job, g, edits, attr_fn, batch_size=8)
  assert base.shape == (5, 3) and edited.shape == (5, 2, 2, 3)
  raw = edited - base[:, None, None]
  # Linear in the strength, opposite for the opposite sign.
  np.testing.assert_allclose(raw[:, 0, 1], 3 * raw[:, 0, 0], rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(raw[:, 1], -raw[:, 0], rtol=1e-3, atol=1e-3)
  assert np.abs(raw[..., 0]).min() > 1e-2  # the edit does move the target
  np.testing.assert_allclose(raw[..., 1], 0, atol=1e-3 * np.abs(raw[..., 0]).max())
  np.testing.assert_allclose(raw[..., 2], 0.5 * raw[..., 0], rtol=1e-3, atol=1e-3)
  res = ad.evaluate(base, edited, edits, [0, 0], alphas, sd, attr_fn.names, x_star=0.0)
  s = res[0]["summary"]
  dt = raw[:, 0, :, 0] / sd[0]  # (N, K)
  # Others = blind (AD 0) and leak (0.5 |dt| sd_t / sd_leak): known in closed form from dt.
  leak = 0.5 * np.abs(dt) * sd[0] / sd[2]
  np.testing.assert_allclose(s["target_change"], dt.mean(0), rtol=1e-6)
  np.testing.assert_allclose(s["max_ad"], leak.mean(0), rtol=1e-3)
  np.testing.assert_allclose(s["mean_ad"], leak.mean(0) / 2, rtol=1e-3)
  # Blind-only: AD 0 for an edit that provably moves only the target.
  r_blind = ad.ad_curves(base, edited[:, 0], sd, 0, others=[True, True, False])
  np.testing.assert_allclose(r_blind["mean_ad"], 0, atol=1e-3)
  # Resume: a finished job is not recomputed and reads back the same; other edits are refused.
  assert ad.run_job(job, g, edits, attr_fn, batch_size=8) == 0
  # A run killed after its first shard, restarted: the same numbers.
  job2 = ad.make_job(tmp_path / "restart", "heldout", g, attr_fn, range(5), edits, alphas, images_per_shard=2)
  job2.write(0, **job.read(0))
  assert ad.run_job(job2, g, edits, attr_fn, batch_size=8) == 3
  base2, edited2 = ad.read_job(job2)
  np.testing.assert_array_equal(base2, base)
  np.testing.assert_array_equal(edited2, edited)
  with pytest.raises(ValueError, match="differ"):
    ad.run_job(job, g, edits[:1], attr_fn, batch_size=8)
  pngs = ad.write_outputs(tmp_path / "out", res, 0.5)
  md = (tmp_path / "out" / "ad.md").read_text()
  assert (
    pngs == ["ad_target.png"] and "| target | minus | 3 |" in md and "| n/a | n/a | n/a |" in md
  )  # the minus edit never reaches +0.5


def test_line_plot_draws_series():
  img = line_plot.line_plot([("a", [0, 1, 2], [0, 1, 4]), ("b", [0, 1], [0, np.nan])], "t", "x", "y", vlines=(1.0,))
  assert img.dtype == np.uint8 and img.shape == (380, 520, 3)
  assert (img != 255).any(axis=-1).mean() > 0.02  # something drawn
  both = line_plot.side_by_side([img, img[:100]])
  assert both.shape == (380, 520 * 2 + 6, 3)
