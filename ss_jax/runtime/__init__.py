"""Runtime plumbing shared by every part: devices and meshes, multi-process runs (distributed),
resumable jobs with atomic writes (jobs), model/pytree fingerprints (fingerprints), image files
(images), asset paths (defaults).

Imports nothing from the rest of ss_jax.
"""
