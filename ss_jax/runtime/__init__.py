"""Running ss-jax safely: the binaries' wrapper, output folders and workdir locks.

  cli.py      runtime.cli.run(main): one-line errors, flag validators, quiet logging
  outputs.py  output folders never destroy user files (marker, --overwrite, umask)
  lock.py     one writer per workdir (lock file with process id and host)
"""
