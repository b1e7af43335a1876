"""Multi-host runs: start-up guard, lock-step batches on fake devices, and a real two-process run.

The two-process test starts two `python -c` workers on localhost (jax.distributed
with gloo CPU collectives, 2 fake devices each) that run population statistics
and gradient maps of a tiny generator, and compares their files with a
single-device run, including resumes with another process and device count.
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from ss_jax.runtime import distributed, jobs
from ss_jax.stylespace.gradmaps import api as gradmaps
from ss_jax.stylespace import stats
from ss_jax.stylespace.gradmaps import storage
from ss_jax import save_generator
from ss_jax.stylegan2.generator import GeneratorConfig

import tiny

REPO = pathlib.Path(__file__).resolve().parents[1]
# 8 px, 5 style layers: small programs, so the workers compile in seconds.
SMALL = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, channels=(8, 8), mapping_layers=1)
# 5 stats shards and 3 gradient-map shards: uneven over 2 processes (rounds without work).
JOB = dict(
  num_samples=40, samples_per_shard=8, batch_size=4, psi=0.7, seeds=list(range(5)), per=2, res=4, method="local"
)


def _one_device():
  return jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])


def run_jobs(workdir, g, mesh=None):
  """The two jobs of this test in workdir (as the workers run them); returns the stats."""
  job = stats.make_job(workdir, g, JOB["num_samples"], JOB["psi"], 0, JOB["samples_per_shard"])
  r = stats.population_stats(
    g, JOB["num_samples"], JOB["psi"], JOB["batch_size"], job=job, samples_per_shard=JOB["samples_per_shard"], mesh=mesh
  )
  gm = storage.gradient_map_job(
    workdir, g, JOB["seeds"], "small", JOB["res"], psi=JOB["psi"], images_per_shard=JOB["per"]
  )
  gradmaps.run_job(gm, g, method=JOB["method"], mesh=mesh)
  distributed.wait_for_shards(gm)
  return r


WORKER = """
import json, sys
sys.path.insert(0, "tests")
from ss_jax.runtime import distributed
a = json.loads(sys.argv[1])
distributed.initialize(a["coordinator"], 2, a["process_id"])
import jax, numpy as np
import test_runtime_distributed as t, tiny
g = tiny.tiny_generator(0, t.SMALL)
for wd in a["workdirs"]:
  r = t.run_jobs(wd, g)
  if distributed.is_main():
    np.savez(wd + "/result.npz", mean=r["mean"], std=r["std"], count=r["count"])
rows = distributed.gather_rows(np.arange(jax.process_index() + 1))
print("RESULT " + json.dumps({"process": jax.process_index(), "devices": jax.device_count(),
                              "local": jax.local_device_count(), "gathered": rows.tolist(),
                              "describe": distributed.describe()}), flush=True)
"""


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def launch_two_processes(make_args, timeout=150):
  """Runs processes 0 and 1 (2 fake CPU devices each) of `python ARGS`; returns [(stdout, stderr)].

  make_args(coordinator, process_id) -> the arguments after `python`.
  """
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
  for k in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
    env.pop(k, None)
  coordinator = f"localhost:{_free_port()}"
  procs = [
    subprocess.Popen(
      [sys.executable, *make_args(coordinator, i)],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=timeout))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.communicate()
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, f"process failed ({p.returncode}):\n{out[-2000:]}\n{err[-4000:]}"
  return outs


def run_workers(workdirs):
  """WORKER on two processes; their RESULT dicts."""
  outs = launch_two_processes(
    lambda coordinator, i: [
      "-c",
      WORKER,
      json.dumps({"coordinator": coordinator, "process_id": i, "workdirs": [str(w) for w in workdirs]}),
    ]
  )
  return [json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:]) for out, _ in outs]


def _shard_times(job):
  return {i: os.stat(job.shard_path(i)).st_mtime_ns for i in range(job.num_shards) if job.done(i)}


def _assert_same_gradmaps(a, b):
  assert a.num_shards == b.num_shards
  for i in range(a.num_shards):
    x, y = a.read(i), b.read(i)
    assert x.keys() == y.keys()
    for k in ("seeds", "index"):
      np.testing.assert_array_equal(x[k], y[k])
    np.testing.assert_allclose(x["styles"], y["styles"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x["maps"], y["maps"], rtol=1e-4, atol=1e-6)
    assert np.abs(x["images"].astype(int) - y["images"]).max() <= 1  # uint8 rounding of float noise


def _assert_same_stats(r, ref):
  assert int(r["count"]) == ref["count"]
  np.testing.assert_allclose(r["mean"], ref["mean"], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(r["std"], ref["std"], rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- start-up guard


def test_initialize_only_when_asked(monkeypatch):
  for k in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
    monkeypatch.delenv(k, raising=False)
  assert distributed.initialize() is False  # plain single-host run: nothing to join
  assert jax.process_count() == 1 and not jax.distributed.is_initialized()
  with pytest.raises(ValueError, match="without a coordinator"):
    distributed.initialize(num_processes=2, process_id=1)
  monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "2")
  with pytest.raises(ValueError, match="without a coordinator"):
    distributed.initialize()
  monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "x")
  with pytest.raises(ValueError, match="not an integer"):
    distributed.initialize()
  monkeypatch.delenv(distributed.ENV_NUM_PROCESSES)
  monkeypatch.setenv(distributed.ENV_COORDINATOR, "localhost:1")
  with pytest.raises(ValueError, match="without num_processes"):
    distributed.initialize()
  assert not jax.distributed.is_initialized()


# ----------------------------------------------------------------------------- one process, fake devices


def _affine(g, x, c):
  return {"y": x @ g["w"] + c, "n": x.sum(1)}


def test_map_batches_pads_and_matches_one_device():
  mesh = distributed.default_mesh()
  assert mesh.devices.size == 4 and distributed.local_device_count(mesh) == 4  # tests/conftest.py
  assert not distributed.spans_processes(mesh)
  g = {"w": np.arange(6, dtype=np.float32).reshape(3, 2)}
  x = np.random.RandomState(0).randn(10, 3).astype(np.float32)
  c = np.float32(0.5)
  got = list(distributed.map_batches(_affine, g, (x,), (c,), batch_size=3, mesh=mesh))  # 3 -> 4 rows
  assert [len(o["y"]) for o in got] == [4, 4, 2]
  one = list(distributed.map_batches(_affine, g, (x,), (c,), batch_size=10, mesh=_one_device()))
  for k in ("y", "n"):
    np.testing.assert_allclose(np.concatenate([o[k] for o in got]), one[0][k], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(one[0]["y"], x @ g["w"] + c, rtol=1e-6, atol=1e-6)
  prep = list(
    distributed.map_batches(
      _affine, g, (np.arange(5),), (c,), 4, mesh, prepare=lambda i: (np.stack([i, i, i], 1).astype(np.float32),)
    )
  )
  np.testing.assert_allclose(np.concatenate([o["n"] for o in prep]), 3 * np.arange(5))
  assert list(distributed.map_batches(_affine, g, (x[:0],), (c,), 4, mesh)) == []  # no rows, no steps
  step = distributed.sharded_step(_affine, distributed.auto_axes(mesh), 1, 1)
  out = step(distributed.replicate(g, mesh), distributed.global_batch(x[:8], mesh), c)
  assert out["y"].sharding.spec == jax.P("data") and len(out["y"].sharding.device_set) == 4
  np.testing.assert_allclose(distributed.local_rows(out["y"]), one[0]["y"][:8], rtol=1e-6, atol=1e-6)


def test_main_progress_only_on_process_0(monkeypatch):
  p = distributed.main_progress(10, "items", "images", done=3, interval=0)
  assert isinstance(p, jobs.Progress) and (p.total, p.label, p.unit, p.done, p.interval) == (
    10,
    "items",
    "images",
    3,
    0,
  )
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert distributed.main_progress(10, "items") is None


def test_schedule_gather_and_wait_in_one_process(tmp_path):
  assert distributed.schedule([3, 1]) == [3, 1] and distributed.schedule([]) == []
  assert distributed.agree_max(7) == 7 and distributed.allgather(np.int64(2)).tolist() == [2]
  np.testing.assert_array_equal(distributed.gather_rows(np.arange(3)), np.arange(3))
  job = jobs.ShardedJob(tmp_path, "j", {}, 2)
  assert (job.process_index, job.process_count) == (0, 1)  # from jax
  job.write(0, x=np.zeros(1))
  with pytest.raises(jobs.ShardsMissing, match="1 shard\\(s\\) not done \\(first: shard_00001.npz\\)"):
    distributed.wait_for_shards(job)  # one process: nobody else will write it, fail at once
  job.write(1, x=np.zeros(1))
  distributed.wait_for_shards(job)
  assert "process 0/1, 4 local of 4 cpu devices" in distributed.describe()


# ----------------------------------------------------------------------------- two real processes


def test_two_processes_match_one_device_and_resume(tmp_path):
  g = tiny.tiny_generator(0, SMALL)
  ref_stats = run_jobs(tmp_path / "ref", g, mesh=_one_device())  # the single-device reference
  ref_gm = storage.open_job(tmp_path / "ref", storage.GRADMAPS)
  # A 1-process run "killed" with shards missing, to be finished by 2 processes x 2 devices.
  shutil.copytree(tmp_path / "ref", tmp_path / "resume")
  resume_st = storage.open_job(tmp_path / "resume", stats.JOB_NAME)
  resume_gm = storage.open_job(tmp_path / "resume", storage.GRADMAPS)
  for job, drop in ((resume_st, (1, 4)), (resume_gm, (0,))):
    for i in drop:
      os.remove(job.shard_path(i))
  kept = {"st": _shard_times(resume_st), "gm": _shard_times(resume_gm)}

  results = run_workers([tmp_path / "fresh", tmp_path / "resume"])

  assert [r["process"] for r in results] == [0, 1]
  assert all(r["devices"] == 4 and r["local"] == 2 for r in results)
  assert all(r["gathered"] == [0, 0, 1] for r in results)  # rows of process 0, then process 1
  for name in ("fresh", "resume"):
    _assert_same_stats(dict(np.load(tmp_path / name / "result.npz")), ref_stats)
    _assert_same_gradmaps(storage.open_job(tmp_path / name, storage.GRADMAPS), ref_gm)
  # Only the missing shards were recomputed.
  assert {i: t for i, t in _shard_times(resume_st).items() if i in kept["st"]} == kept["st"]
  assert {i: t for i, t in _shard_times(resume_gm).items() if i in kept["gm"]} == kept["gm"]
  assert sorted(_shard_times(resume_st)) == list(range(5)) and sorted(_shard_times(resume_gm)) == [0, 1, 2]

  # The 2-process run "killed" with shards missing, finished by 1 process on 1 device.
  fresh_st = storage.open_job(tmp_path / "fresh", stats.JOB_NAME)
  fresh_gm = storage.open_job(tmp_path / "fresh", storage.GRADMAPS)
  os.remove(fresh_st.shard_path(2))
  os.remove(fresh_gm.shard_path(1))
  _assert_same_stats(run_jobs(tmp_path / "fresh", g, mesh=_one_device()), ref_stats)
  _assert_same_gradmaps(fresh_gm, ref_gm)


def test_binary_on_two_processes(tmp_path):
  g = tiny.tiny_generator(1, SMALL)
  save_generator(g, tmp_path / "gen")
  args = [
    f"--checkpoint={tmp_path / 'gen'}",
    "--num_samples=20",
    "--samples_per_shard=8",
    "--batch_size=4",
    f"--workdir={tmp_path / 'w'}",
  ]
  outs = launch_two_processes(
    lambda coordinator, i: [
      "-m",
      "experiments.style_stats",
      *args,
      f"--coordinator_address={coordinator}",
      "--num_processes=2",
      f"--process_id={i}",
    ]
  )
  assert "process 0/2, 2 local of 4 cpu devices" in outs[0][0] and "wrote" in outs[0][0]
  said = [l for l in outs[1][0].splitlines() if l.strip() and not l.startswith("[Gloo]")]
  assert said == []  # process 1 computes its shards; process 0 alone prints and writes
  ref = stats.population_stats(g, 20, batch_size=4, samples_per_shard=8, mesh=_one_device())
  _assert_same_stats(stats.load(tmp_path / "w" / "stats.npz", g.layout), ref)
  p = subprocess.run(
    [sys.executable, "-m", "experiments.style_stats", *args, "--num_processes=2"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
    env={k: v for k, v in os.environ.items() if k != distributed.ENV_COORDINATOR},
  )
  assert p.returncode != 0 and "without a coordinator" in p.stderr.strip().splitlines()[-1]
