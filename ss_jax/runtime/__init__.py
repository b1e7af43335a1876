"""Runtime plumbing shared by every part: devices and meshes, multi-process runs (distributed),
resumable jobs with atomic writes (jobs), model/pytree fingerprints (fingerprints), image files
(images), asset paths (defaults), and running ss-jax safely:

  cli.py      runtime.cli.run(main): one-line errors, flag validators, quiet logging
  outputs.py  output folders never destroy user files (marker, --overwrite, umask)
  lock.py     one writer per workdir (lock file with process id and host)

Imports nothing from the rest of ss_jax.
"""
