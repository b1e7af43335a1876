"""Multi-host runs on JAX's own multi-controller runtime: start-up, a global mesh, lock-step batches.

Every long job (population statistics, gradient maps, DCI sampling, batch edits)
is a `jobs.ShardedJob`: a fixed list of shards whose layout depends only on the
job's settings, never on the number of devices or processes. One code path runs
it on 1 device, N local devices or M processes x N devices:

  initialize(...)         joins the runtime (`jax.distributed.initialize`), only
                          when asked: a coordinator address (argument or env
                          JAX_COORDINATOR_ADDRESS) or auto=True (TPU pod slices,
                          SLURM, Open MPI, Kubernetes: JAX detects the rest).
  default_mesh()           1-D mesh 'data' over jax.devices() of every process,
                          devices grouped by process.
  schedule(pending)       this process's pending shards (ShardedJob.pending(),
                          i.e. its round-robin share) padded with None to the
                          number of rounds all processes agree on.
  map_batches(fn, g, ...) fn over this process's rows in fixed-size steps: each
                          process feeds its own rows (possibly none) into one
                          global array (`jax.make_array_from_process_local_data`),
                          the jitted step runs on every device of the mesh with
                          the generator replicated, and each process reads back
                          only its own rows. No collective runs inside the step.
  wait_for_shards(job)    barrier (`multihost_utils.sync_global_devices`), then a
                          short poll for the shard files, before process 0 merges.
  is_main(), log(...)     process 0 alone prints and writes final outputs;
  main_progress(...)      its progress lines (None on the other processes).

Rounds and steps are lock-step: in a multi-process run, every process makes the
same sequence of `map_batches` / `schedule` / `wait_for_shards` calls (a process
without work in a round feeds zero rows), because a computation on a mesh that
spans processes must be launched by all of them. The counts are agreed with a
tiny all-gather, so processes may hold different numbers of pending shards (e.g.
after a restart with another process count).

Shards live on a filesystem every process can read (NFS, Filestore, gcsfuse...):
each process writes its own shards, process 0 reads them all to merge. A killed
run is restarted with the same command (any device or process count): finished
shards are kept, only missing ones are computed.
"""

import functools
import os
import time

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from ss_jax.runtime import jobs, memory

AXIS = "data"
ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"  # read by jax.distributed.initialize itself too
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
DEFAULT_WAIT_S = 600.0  # after the barrier: how long shard files may take to show up (NFS caches)


# ----------------------------------------------------------------------------- start-up


def _env_int(name):
  v = os.environ.get(name)
  if v is None or not v.strip():
    return None
  try:
    return int(v)
  except ValueError:
    raise ValueError(f"env {name}={v!r} is not an integer") from None


def initialize(
  coordinator=None, num_processes=None, process_id=None, *, auto=False, local_device_ids=None, timeout_s=300
):
  """Joins JAX's multi-controller runtime when asked; returns True in a multi-process run.

  Must run before any JAX computation (and before ShardedJobs are made: they read
  jax.process_index()). Nothing happens unless a coordinator is given (argument or
  env JAX_COORDINATOR_ADDRESS, with num_processes / process_id from the arguments or
  env JAX_NUM_PROCESSES / JAX_PROCESS_ID) or auto=True, which lets
  `jax.distributed.initialize()` detect everything on TPU pod slices, SLURM
  (srun), Open MPI (mpirun) and Kubernetes. Plain single-host runs stay untouched
  (the runtime would wait for peers that never come). A second call is a no-op.

  Args:
    coordinator: 'host:port' of process 0, reachable from every process.
    num_processes, process_id: this run's process count and this process's index.
    auto: use JAX's cluster auto-detection for whatever is not given.
    local_device_ids: devices this process drives (e.g. one GPU per process).
    timeout_s: how long to wait for all processes to connect.
  """
  if jax.distributed.is_initialized():
    return jax.process_count() > 1
  coordinator = coordinator or os.environ.get(ENV_COORDINATOR) or None
  num_processes = _env_int(ENV_NUM_PROCESSES) if num_processes is None else int(num_processes)
  process_id = _env_int(ENV_PROCESS_ID) if process_id is None else int(process_id)
  if coordinator is None and not auto:
    if num_processes not in (None, 1) or process_id not in (None, 0):
      raise ValueError(
        f"num_processes={num_processes}, process_id={process_id} given without a coordinator "
        f"address (--coordinator_address or env {ENV_COORDINATOR})"
      )
    return False
  if not auto and (num_processes is None or process_id is None):
    raise ValueError(
      f"coordinator {coordinator} given without num_processes and process_id "
      f"(flags, or env {ENV_NUM_PROCESSES} / {ENV_PROCESS_ID}); or use auto-detection"
    )
  # CPU processes exchange the (tiny) agreement and barrier collectives through gloo.
  if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") in (None, "", "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
      coordinator, num_processes, process_id, local_device_ids=local_device_ids, initialization_timeout=int(timeout_s)
    )
  except RuntimeError as e:
    raise RuntimeError(
      f"jax.distributed.initialize({coordinator}, {num_processes}, {process_id}) failed: {e} "
      "(it must run before any JAX computation, and all processes must reach the "
      "coordinator)"
    ) from e
  return jax.process_count() > 1


def describe(mesh=None):
  """One line: 'process 0/2, 2 local of 4 cpu devices, mesh data=4'."""
  mesh = mesh or default_mesh()
  return (
    f"process {jax.process_index()}/{jax.process_count()}, {jax.local_device_count()} local of "
    f"{jax.device_count()} {jax.devices()[0].platform} devices, mesh {AXIS}={mesh.devices.size}"
  )


def is_main():
  return jax.process_index() == 0


def main_progress(total, label, unit="items", **kwargs):
  """A jobs.Progress on process 0, None on the others (they advance in lock-step and stay quiet)."""
  return jobs.Progress(total, label, unit, **kwargs) if is_main() else None


def log(*args, **kwargs):
  """print(...) on process 0 only (flushed)."""
  if is_main():
    print(*args, **kwargs, flush=True)


# ----------------------------------------------------------------------------- meshes


def default_mesh():
  """1-D mesh with axis 'data' over every device of every process, grouped by process, Auto axes.

  Grouping keeps each process's rows one contiguous block of a global batch.
  """
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return jax.make_mesh((len(devices),), (AXIS,), devices=devices, axis_types=(AxisType.Auto,))


def local_mesh():
  """1-D mesh over this process's devices only: computations on it need no other process."""
  return jax.make_mesh((jax.local_device_count(),), (AXIS,), devices=jax.local_devices(), axis_types=(AxisType.Auto,))


def auto_axes(mesh):
  """The mesh with Auto axis types (jit in/out shardings; the compiler partitions the inside).

  jax.make_mesh defaults to Explicit axes, under which every op of the generator
  would have to carry sharding types; the jobs only shard the batch axis.
  """
  if all(t == AxisType.Auto for t in mesh.axis_types):
    return mesh
  return jax.sharding.Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))


def spans_processes(mesh):
  """True when some device of the mesh belongs to another process (lock-step needed)."""
  me = jax.process_index()
  return any(d.process_index != me for d in mesh.devices.flat)


def local_device_count(mesh):
  me = jax.process_index()
  return sum(d.process_index == me for d in mesh.devices.flat)


# ----------------------------------------------------------------------------- agreement, barrier


def allgather(x):
  """(...) host value of every process -> (process_count, ...) numpy, same on every process."""
  x = np.asarray(x)
  if jax.process_count() == 1:
    return x[None]
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(x))


def agree_max(n, mesh=None):
  """max over processes of n when the mesh spans processes, else n (a collective: all must call)."""
  if mesh is not None and not spans_processes(mesh):
    return int(n)
  return int(np.max(allgather(np.int64(n))))


def gather_rows(local):
  """Concatenate every process's (n_p, ...) rows in process order -> (sum n_p, ...) on every host.

  Row counts may differ between processes (rows are padded for the exchange).
  """
  local = np.asarray(local)
  if jax.process_count() == 1:
    return local
  counts = allgather(np.int64(len(local)))
  pad = np.zeros((int(counts.max()) - len(local),) + local.shape[1:], local.dtype)
  every = allgather(np.concatenate([local, pad]))
  return np.concatenate([every[p, : int(c)] for p, c in enumerate(counts)])


def barrier(name):
  """Blocks until every process reaches barrier(name) (no-op in a single-process run)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def schedule(pending, mesh=None):
  """This process's shards, padded with None to the agreed number of rounds.

  In round r every process handles its r-th pending shard, or feeds no rows (None)
  once it has none left, so all processes launch the same sequence of steps.
  """
  pending = list(pending)
  return pending + [None] * (agree_max(len(pending), mesh) - len(pending))


def wait_for_shards(*jobs_, timeout_s=None, poll_s=0.5):
  """Barrier, then wait until every shard file of the jobs exists; jobs.ShardsMissing after timeout_s.

  The barrier means every process has finished writing; the poll covers a shared
  filesystem that shows another host's new files late (NFS attribute caches).
  timeout_s: default DEFAULT_WAIT_S with several processes, 0 in a single-process run.
  """
  barrier("ss_jax/wait_for_shards/" + ",".join(str(j.dir) for j in jobs_))
  if timeout_s is None:
    timeout_s = DEFAULT_WAIT_S if jax.process_count() > 1 else 0.0
  deadline = time.time() + timeout_s
  while True:
    missing = [(j, i) for j in jobs_ for i in range(j.num_shards) if not j.done(i)]
    if not missing:
      return
    if time.time() >= deadline:
      j, i = missing[0]
      raise jobs.ShardsMissing(
        f"{j.dir}: {len(missing)} shard(s) not done (first: {j.shard_path(i).name}) after "
        f"{timeout_s:.0f}s; other processes still running, or a workdir that is not shared "
        "by all processes"
      )
    time.sleep(poll_s)


# ----------------------------------------------------------------------------- global arrays


def replicate(tree, mesh):
  """Every leaf fully replicated on the mesh (as is when it already is)."""
  sh = NamedSharding(mesh, P())
  leaves = jax.tree.leaves(tree)
  if all(isinstance(x, jax.Array) and x.sharding == sh for x in leaves):
    return tree
  if spans_processes(mesh):  # host values: every process holds the same ones
    tree = jax.tree.map(np.asarray, tree)
  return jax.device_put(tree, sh)


def global_batch(local, mesh):
  """This process's rows (n_local, ...) -> one global array sharded over 'data'.

  n_local must be a multiple of the process's device count on the mesh, and equal
  on every process; the global array has n_local * process_count rows.
  """
  sh = NamedSharding(mesh, P(AXIS))
  if not spans_processes(mesh):
    return jax.device_put(local, sh)
  return jax.make_array_from_process_local_data(sh, np.asarray(local))


def local_rows(x):
  """The rows of a 'data'-sharded global array held by this process, (n_local, ...) numpy."""
  if x.is_fully_addressable:
    return np.asarray(x)
  parts = {}
  for s in x.addressable_shards:
    parts.setdefault(s.index[0].start or 0, s)
  return np.concatenate([np.asarray(parts[k].data) for k in sorted(parts)])


@functools.lru_cache(maxsize=None)
def sharded_step(fn, mesh, num_batched, num_replicated):
  """jit(fn) for args (g, *batched, *replicated): batch axis 0 sharded over 'data', the rest replicated.

  Cached on (fn, mesh, ...): pass the same fn object to reuse the compiled step.
  """
  batch, repl = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())
  return jax.jit(fn, in_shardings=(repl,) + (batch,) * num_batched + (repl,) * num_replicated, out_shardings=batch)


def pad_rows(a, n):
  """Rows of a padded to n by repeating the last one (zeros when there is none)."""
  k = len(a)
  if k == n:
    return a
  fill = np.repeat(a[-1:], n - k, axis=0) if k else np.zeros((n - k,) + a.shape[1:], a.dtype)
  return np.concatenate([a, fill])


def map_batches(fn, g, batched, replicated=(), batch_size=256, mesh=None, prepare=None):
  """Yield fn(g, *prepare(*rows), *replicated) for consecutive batches of this process's rows.

  Args:
    fn: (g, *batch arrays (B, ...), *replicated) -> pytree of (B, ...) arrays, row-wise.
      Pass the same object on every call (it keys the compiled-step cache).
    g: pytree replicated on every device (the generator).
    batched: tuple of (n, ...) numpy arrays, this process's rows (n may be 0).
    replicated: extra arguments, the same on every device.
    batch_size: rows per step per process, rounded up to a multiple of the process's
      devices on the mesh; every step has this shape (one compile); pad rows repeat
      the last real row (zeros if none) and are dropped from the output.
    mesh: 1-D mesh with axis 'data' (default: default_mesh(); Explicit axes are
      treated as Auto).
    prepare: optional host function (rows of batched) -> tuple of arrays, applied to
      each padded batch (e.g. seeds -> z and class labels).

  Yields:
    The outputs for the batch's real rows, as numpy (k, ...) (a pytree like fn's).
    On a mesh spanning processes every process must call this (the number of steps
    is the max over processes) and consume the whole generator.
  """
  mesh = auto_axes(mesh or default_mesh())
  ndev = local_device_count(mesh)
  bs = -(-max(int(batch_size), 1) // ndev) * ndev
  batched = tuple(np.asarray(a) for a in batched)
  n = len(batched[0])
  if any(len(a) != n for a in batched):
    raise ValueError(f"batched arrays differ in length: {[len(a) for a in batched]}")
  steps = agree_max(-(-n // bs), mesh)
  if steps == 0:
    return
  g = replicate(g, mesh)
  replicated = tuple(replicate(r, mesh) for r in replicated)
  pending = None
  for t in range(steps):
    parts = [pad_rows(a[t * bs : (t + 1) * bs], bs) for a in batched]
    k = max(0, min(bs, n - t * bs))
    if prepare is not None:
      parts = list(prepare(*parts))
    step = sharded_step(fn, mesh, len(parts), len(replicated))
    args = (g, *[global_batch(p, mesh) for p in parts], *replicated)
    if t == 0:  # compile first (a cache hit after the first call), then return the compiler's freed heap
      step.lower(*args).compile()
      memory.release_free_heap()
    out = step(*args)  # async: overlaps the host work
    if pending is not None:
      yield jax.tree.map(lambda x, k=pending[1]: local_rows(x)[:k], pending[0])
    pending = out, k
  yield jax.tree.map(lambda x: local_rows(x)[: pending[1]], pending[0])
