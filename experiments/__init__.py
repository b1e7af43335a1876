"""absl binaries: `python -m experiments.NAME --flag=...`."""
