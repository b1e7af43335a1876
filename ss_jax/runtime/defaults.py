"""Paths of the embedded default models shipped inside the package (ToyFaces)."""

import pathlib

ASSETS = pathlib.Path(__file__).resolve().parents[1] / "assets"  # ss_jax/assets
TOYFACES_GENERATOR = ASSETS / "toyfaces" / "generator"
TOYFACES_ENCODER = ASSETS / "toyfaces" / "encoder"  # ss_jax.inversion.encoder.load_encoder default


def default_checkpoint():
  """The shipped ToyFaces generator directory; a clear error if it is missing from this install."""
  if not (TOYFACES_GENERATOR / "config.json").is_file():
    raise FileNotFoundError(
      f"the embedded ToyFaces generator is missing ({TOYFACES_GENERATOR}); pass --checkpoint=PATH"
    )
  return TOYFACES_GENERATOR
