"""ToyFaces: a procedural world of cartoon faces with exact ground truth.

Every image comes with a pixel-exact part label map and the attribute vector
that generated it; re-rendering an edited attribute vector gives the
ground-truth edit. Entry points live in the submodules (the package does
not re-export `render.render`, which would shadow the `render` module):

  from ss_jax.toyfaces import render
  images, labels, attrs = render.render(seeds, resolution=64)
"""

from ss_jax.toyfaces.attributes import (
  ATTRIBUTE_INDEX,
  ATTRIBUTE_NAMES,
  ATTRIBUTES,
  BINARY,
  LOCAL,
  NUM_ATTRIBUTES,
  Attribute,
  attribute_targets,
  format_attribute_table,
  sample_attributes,
)
from ss_jax.toyfaces.parts import (
  CATEGORIES,
  CATEGORY_OF_PART,
  NUM_PARTS,
  PART_INDEX,
  PART_NAMES,
  PART_TO_CATEGORY,
  category_labels,
  category_masks,
  colorize_labels,
  part_masks,
)
from ss_jax.toyfaces.render import render_attributes
