"""Quality of a generator trained on ToyFaces, measured against fresh renders.

Fréchet distance in the ToyFaces classifier's feature space between generated
and rendered images, reported next to the same number for a random-init
generator (an upper anchor) and for two disjoint rendered sets (the floor set
by sampling noise); plus the segmenter's part-area and the classifier's
attribute-rate distributions on both sets.
"""

import numpy as np

from ss_jax.runtime import images as image_lib
from ss_jax.stylegan2 import sampling
from ss_jax.toyfaces import evaluate
from ss_jax.toyfaces import render

# Disjoint from the GAN's training seeds (1e9 + ...) and the helper models' seeds.
RENDER_SEEDS_A = 20_000_000
RENDER_SEEDS_B = 30_000_000


def generated_uint8(g, num, psi=1.0, seed0=0, batch_size=64):
  """(num, H, W, 3) uint8 images of seeds seed0.. at the given psi, const noise."""
  z = sampling.z_from_seeds(range(seed0, seed0 + num), g.config.z_dim)
  return image_lib.to_uint8(sampling.generate(g, z, None, psi, batch_size))


def rendered_uint8(num, start, resolution):
  return render.render(np.arange(start, start + num), resolution)[0]


def quality_report(g, random_g, classifier, segmenter, num=2000, psi=1.0):
  """Dict of Fréchet distances and distribution comparisons (JSON-ready)."""
  res = g.config.img_resolution
  sets = {
    "generated": generated_uint8(g, num, psi),
    "random_init": generated_uint8(random_g, num, 1.0),
    "renders_a": rendered_uint8(num, RENDER_SEEDS_A, res),
    "renders_b": rendered_uint8(num, RENDER_SEEDS_B, res),
  }
  outs = {k: classifier.outputs(v) for k, v in sets.items()}  # (logits, features)
  fd = {
    f"{k} vs renders_a": evaluate.frechet_distance(outs[k][1], outs["renders_a"][1])
    for k in ("generated", "random_init", "renders_b")
  }
  labels = {k: segmenter.segment(sets[k]) for k in ("renders_a", "generated")}
  reliable = classifier.reliable()
  rates = evaluate.compare_attribute_rates(
    outs["renders_a"][0][:, reliable],
    outs["generated"][0][:, reliable],
    [n for n, r in zip(classifier.attribute_names, reliable) if r],
  )
  areas = evaluate.compare_part_areas(labels["renders_a"], labels["generated"])
  return {
    "num_images": num,
    "psi": psi,
    "frechet_distance": fd,
    "attribute_rates": rates,
    "part_areas": areas,
    "images": sets,
  }


def format_report(rep):
  """Markdown summary of quality_report (without the images)."""
  lines = [
    f"Fréchet distance in the ToyFaces classifier's feature space ({rep['num_images']} images each, "
    f"generated at psi {rep['psi']}):",
    "",
    "| set | FD to renders |",
    "|---|---|",
  ]
  lines += [f"| {k.split(' vs ')[0]} | {v:.3f} |" for k, v in rep["frechet_distance"].items()]
  lines += [
    "",
    "Positive rate per attribute (classifier, attributes with held-out AUC >= 0.8):",
    "",
    evaluate.format_comparison(rep["attribute_rates"]),
    "",
    "Part-area fractions per category (segmenter on both sets):",
    "",
    evaluate.format_comparison(rep["part_areas"]),
  ]
  return "\n".join(lines)
