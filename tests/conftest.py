"""Shared test setup: fixture paths and fake CPU devices for sharding tests."""

import os
import pathlib

# Several fake CPU devices so sharding code paths are exercised; must precede jax import.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("SS_JAX_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir():
  if not FIXTURES.is_dir():
    msg = f"shared fixtures not found at {FIXTURES} (set SS_JAX_SHARED)"
    if os.environ.get("CI"):
      pytest.fail(msg)  # in CI the parity tests must run, never silently skip
    pytest.skip(msg)
  return FIXTURES


@pytest.fixture(autouse=True)
def _release_workdir_locks():
  """Jobs made in this process hold their workdir's lock until exit; tests then run
  binaries on those workdirs, so each test gives its locks back when it ends."""
  yield
  from ss_jax.runtime import lock

  lock.release()
