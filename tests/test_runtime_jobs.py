"""Resumable sharded jobs: atomic shards, settings guard, process split."""

import numpy as np
import pytest

from ss_jax.runtime import jobs


def test_shards_resume_and_concatenate(tmp_path):
  job = jobs.ShardedJob(tmp_path, "stats", {"n": 10, "ckpt": "a"}, num_shards=3)
  assert job.pending() == [0, 1, 2]
  job.write(0, x=np.arange(3))
  job.write(2, x=np.arange(6, 9))
  again = jobs.ShardedJob(tmp_path, "stats", {"n": 10, "ckpt": "a"}, num_shards=3)
  assert again.pending() == [1] and not again.complete()
  with pytest.raises(RuntimeError, match="not done"):
    again.read_all()
  again.write(1, x=np.arange(3, 6))
  np.testing.assert_array_equal(again.read_all()["x"], np.arange(9))
  assert not list(tmp_path.glob("**/*.tmp"))


def test_settings_mismatch_is_refused(tmp_path):
  jobs.ShardedJob(tmp_path, "j", {"n": 10}, num_shards=2)
  with pytest.raises(jobs.SettingsMismatch, match="different settings \\(n\\)"):
    jobs.ShardedJob(tmp_path, "j", {"n": 11}, num_shards=2)


def test_moved_checkpoint_with_the_same_model_resumes(tmp_path):
  spec = {"n": 10, "checkpoint": "/old/place/model", "model": "f00d"}
  job = jobs.ShardedJob(tmp_path, "j", spec, num_shards=2)
  job.write(0, x=np.arange(2))
  moved = jobs.ShardedJob(tmp_path, "j", dict(spec, checkpoint="/new/place/model"), num_shards=2)
  assert moved.pending() == [1] and moved.spec["checkpoint"] == "/new/place/model"
  assert jobs.ShardedJob(tmp_path, "j", dict(spec, checkpoint="/new/place/model"), 2, 1, 2).pending() == [1]
  reread = jobs.ShardedJob(tmp_path, "j", dict(spec, checkpoint="/new/place/model"), num_shards=2)
  assert reread.spec == moved.spec  # the new path is what the workdir records now
  with pytest.raises(jobs.SettingsMismatch, match="checkpoint, model"):  # another model at the new path
    jobs.ShardedJob(tmp_path, "j", dict(spec, checkpoint="/elsewhere", model="beef"), num_shards=2)
  # A job whose spec embeds the spec of the job it reads (detection reads gradient maps).
  nested = {"reads": spec, "threshold": 0.5}
  jobs.ShardedJob(tmp_path, "d", nested, num_shards=1)
  jobs.ShardedJob(tmp_path, "d", {"reads": dict(spec, checkpoint="/new/place/model"), "threshold": 0.5}, 1)
  with pytest.raises(jobs.SettingsMismatch, match="reads"):
    jobs.ShardedJob(tmp_path, "d", {"reads": dict(spec, checkpoint="/x", model="beef"), "threshold": 0.5}, 1)
  jobs.ShardedJob(tmp_path, "k", {"checkpoint": "/a"}, num_shards=1)
  with pytest.raises(jobs.SettingsMismatch, match="checkpoint"):  # no fingerprint: the path is all it has
    jobs.ShardedJob(tmp_path, "k", {"checkpoint": "/b"}, num_shards=1)


def test_processes_split_shards(tmp_path):
  a = jobs.ShardedJob(tmp_path, "j", {}, 5, process_index=0, process_count=2)
  b = jobs.ShardedJob(tmp_path, "j", {}, 5, process_index=1, process_count=2)
  assert a.mine() == [0, 2, 4] and b.mine() == [1, 3]
  b.write(1, x=np.zeros(1))
  assert b.pending() == [3] and a.pending() == [0, 2, 4]
  three = jobs.ShardedJob(tmp_path, "j", {}, 5, process_index=2, process_count=3)  # a rerun on 3 processes
  assert three.mine() == [2] and three.spec == a.spec  # same layout, other assignment
  assert (jobs.ShardedJob(tmp_path, "j", {}, 5).process_count, a.num_shards) == (1, 5)  # default: jax's
  with pytest.raises(ValueError, match="out of range"):
    jobs.ShardedJob(tmp_path, "j", {}, 5, process_index=2, process_count=2)


def test_progress_rate_excludes_compilation(monkeypatch):
  import io

  clock = iter([0.0, 30.0, 31.0, 33.0])  # start, first unit (compile), two more units
  monkeypatch.setattr(jobs.time, "time", lambda: next(clock))
  out = io.StringIO()
  p = jobs.Progress(4, "work", "items", interval=0, stream=out)
  p.update(1)
  p.update(1, note="loss 0.5")
  p.update(2)
  lines = out.getvalue().splitlines()
  assert lines[0] == "work: 1/4 items (30s incl. compilation)"
  assert lines[1] == "work: 2/4 items (1/s, ETA 2s), loss 0.5"  # 1 item in the 1 s after compilation
  assert lines[2] == "work: 4/4 items (1/s, ETA 0s)"  # 3 items in 3 s
