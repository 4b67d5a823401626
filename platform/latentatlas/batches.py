"""Where a map over batches runs: in this process for small inputs, where Ray's fixed costs
(starting Ray, a pipeline's start, actors importing torch: seconds) dwarf the work, and on
Ray Data at scale. The same function runs either way, so the results agree (a test compares
the two paths). A source of batches is a list of numpy dicts (here) or a Ray Dataset."""

from __future__ import annotations

import sys
import warnings
from functools import cache

import numpy as np

from latentatlas import environment, runtime

# Inference actors reserve half a CPU (they run one torch thread): a pool as large as the
# cluster's CPU count must still leave room for the read and write tasks around it, or
# the pipeline starves.
ACTOR_CPUS = 0.5


def runs_here(rows: int, use_gpu: bool = False) -> bool:
    # Up to LATENTATLAS_LOCAL_ROWS rows a pass runs in this process (torch uses every core
    # here too). Ray's fixed cost is 5-15 s per command on a small machine
    # (bench/RESULTS.md); the crossover has not been measured yet: 100k is a guess.
    return not use_gpu and rows <= environment.local_rows()


def in_batches(arrays: dict[str, np.ndarray], batch_size: int) -> list[dict[str, np.ndarray]]:
    n = len(next(iter(arrays.values())))
    return [{k: v[i:i + batch_size] for k, v in arrays.items()} for i in range(0, n, batch_size)]


def encoding_batches(enc, columns: list[str], *, here: bool, batch_size: int = 8192,
                     blocks: int | None = None):
    """An encoding's `columns`: batches in memory (ordered by index), or a Ray Dataset."""
    if here:
        return in_batches(enc.arrays(columns), batch_size)
    runtime.need_ray()
    read = {"override_num_blocks": blocks} if blocks else {}
    return enc.dataset(**read).select_columns(columns)


def id_batches(rows: int, batch_size: int, *, here: bool, blocks: int | None = None):
    """Row ids 0..rows-1 as `id`: batches in memory, or a Ray Dataset of `blocks` blocks."""
    if here:
        return in_batches({"id": np.arange(rows)}, batch_size)
    runtime.need_ray()
    import ray.data

    return ray.data.range(rows, override_num_blocks=blocks)


def range_batches(rows: int, per_task: int, *, here: bool):
    """Index ranges [start, stop) of `per_task` rows, one per batch (what tasks that read
    their own rows take)."""
    bounds = [(a, min(a + per_task, rows)) for a in range(0, rows, per_task)]
    if here:
        return [{"start": np.array([a]), "stop": np.array([b])} for a, b in bounds]
    runtime.need_ray()
    import ray.data

    return ray.data.from_items([{"start": a, "stop": b} for a, b in bounds],
                               override_num_blocks=max(1, len(bounds)))


def concat(outputs) -> dict[str, np.ndarray]:
    """Batch outputs (dicts of arrays) joined along their first axis."""
    outputs = list(outputs)
    return {k: np.concatenate([np.asarray(o[k]) for o in outputs]) for k in outputs[0]}


def map_concat(source, fn, *, batch_size: int, **fn_kwargs) -> dict[str, np.ndarray]:
    """`fn(batch, **fn_kwargs)` over every batch, outputs joined (a per-batch partial gives
    one row per batch; a per-row function, one row per input row)."""
    if isinstance(source, list):
        return concat(fn(batch, **fn_kwargs) for batch in source)
    return concat(source.map_batches(fn, batch_size=batch_size, fn_kwargs=fn_kwargs)
                  .iter_batches(batch_size=None, batch_format="numpy"))


def default_actors(use_gpu: bool) -> int:
    import ray

    runtime.need_ray()
    resources = ray.cluster_resources()
    return max(1, int(resources.get("GPU", 0) if use_gpu else resources.get("CPU", 1)))


def map_with_actors(source, fn_class, *, batch_size: int, actors: int | None = None,
                    use_gpu: bool = False, shared: dict | None = None,
                    **kwargs) -> dict[str, np.ndarray]:
    """`fn_class(**shared, **kwargs, use_gpu=...)` over every batch, outputs joined: one
    instance here, or a pool of actors on Ray Data (`actor_map`)."""
    if isinstance(source, list):
        fn = fn_class(**(shared or {}), **kwargs, use_gpu=use_gpu)
        return concat(fn(batch) for batch in source)
    return concat(actor_map(source, fn_class, batch_size=batch_size, actors=actors,
                            use_gpu=use_gpu, shared=shared, **kwargs)
                  .iter_batches(batch_size=None, batch_format="numpy"))


def actor_map(ds, fn_class, *, batch_size: int, actors: int | None = None,
              use_gpu: bool = False, shared: dict | None = None, **kwargs):
    """`ds.map_batches` through a pool of `actors` instances of `fn_class` (GPU when asked),
    which get the `shared` values (models, images) through the object store, once."""
    import ray

    if use_gpu:
        runtime.check_resources({"GPU": 1}, "--use-gpu")
    resources = {"num_gpus": 1, "num_cpus": 1} if use_gpu else {"num_cpus": ACTOR_CPUS}
    restarts = {}
    if runtime.current().local:
        # Ray Data restarts dead actors by default, and Ray then logs an error line for
        # every pool ("constructor arguments in the object store and max_restarts > 0"). On
        # a one-machine instance an actor dies only of the machine's own trouble (the OOM
        # killer): fail the step instead. On a cluster a lost node's actors restart. Ray
        # 2.60 takes max_restarts only through its deprecated ray_remote_args.
        restarts = {"max_restarts": 0}
    constructor = {**{k: ray.put(v) for k, v in (shared or {}).items()}, **kwargs,
                   "use_gpu": use_gpu}
    callbacks = ds.context.custom_execution_callback_classes
    if released_on_failure() not in callbacks:  # whoever started Ray, this pool is released
        callbacks.append(released_on_failure())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
        return ds.map_batches(fn_class, batch_size=batch_size, **resources, **restarts,
                              fn_constructor_kwargs=constructor,
                              compute=ray.data.ActorPoolStrategy(
                                  size=actors or default_actors(use_gpu)))


@cache  # one class: registering it twice is a no-op
def released_on_failure():
    """A Ray Data execution callback (`actor_map` registers it on its dataset): when an
    execution fails, the actors of its pools are killed at once. Ray Data 2.60 shuts a
    failed execution down without killing them: it drops its own references and leaves the
    actors to live as long as anything else references them, and a failure's traceback does
    (a notebook's last error, a study's record of a failed step, `pytest.raises`), as do
    Ray Data's own queues on a loaded machine. A training that then asks for the whole node
    waits forever. The start and each scheduling step note the handles the pools hold (no
    more: an actor a pool lets go is not kept alive by the note)."""
    import threading

    from ray.data._internal.execution.execution_callback import ExecutionCallback

    class ReleasedOnFailure(ExecutionCallback):
        def __init__(self):
            self.actors: list = []
            self.closed = False
            # the loop thread notes; shutdown, in the consumer's thread, may overtake it
            self.lock = threading.Lock()

        def before_execution_starts(self, executor) -> None:
            self.on_execution_step(executor)

        def on_execution_step(self, executor) -> None:
            # Ray Data's pool internals (Ray is pinned in constraints.txt)
            pools = [op._actor_pool for op in list(executor._topology)
                     if getattr(op, "_actor_pool", None) is not None]
            with self.lock:
                if not self.closed:
                    self.actors = [actor for pool in pools for actor in
                                   (*list(pool._running_actors),
                                    *list(pool._pending_actors.values()))]

        def after_execution_succeeds(self, executor) -> None:
            with self.lock:
                self.closed, self.actors = True, []

        def after_execution_fails(self, executor, error) -> None:
            import ray

            with self.lock:
                (self.closed, self.actors), actors = (True, []), self.actors
            for actor in actors:
                try:
                    ray.kill(actor)
                except Exception:  # Ray gone or the actor already: the user's error stands
                    pass

    return ReleasedOnFailure


def resolve(value):
    """A value handed to an actor: itself here, fetched from the object store on Ray."""
    ray = sys.modules.get("ray")  # Ray not imported: nothing here is an object reference
    return ray.get(value) if ray and isinstance(value, ray.ObjectRef) else value
