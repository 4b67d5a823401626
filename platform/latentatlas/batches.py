"""Where a map over batches runs: in this process for small inputs, where Ray's fixed costs
(starting Ray, a pipeline's start, actors importing torch: seconds) dwarf the work, and on
Ray Data at scale. The same function runs either way, so the results agree (a test compares
the two paths). A source of batches is a list of numpy dicts (here) or a Ray Dataset."""

from __future__ import annotations

import inspect
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

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
    with pool_released_on_failure():
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
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
        return ds.map_batches(fn_class, batch_size=batch_size, **resources, **restarts,
                              fn_constructor_kwargs=constructor,
                              compute=ray.data.ActorPoolStrategy(
                                  size=actors or default_actors(use_gpu)))


@contextmanager
def pool_released_on_failure() -> Iterator[None]:
    """Run a pipeline of `actor_map` so that, when it fails, its actors give their CPUs back
    at once. Ray Data 2.60 shuts a failed execution down without killing its pool (the
    forced shutdown that would is a no-op once the first has run): the actors live while
    anything references the execution's queued blocks, and the failure's traceback does,
    through the locals of Ray's frames, for as long as it is kept (a notebook's last error,
    a test's `pytest.raises`, a study's record of a failed step). A training that then asks
    for the whole node waits forever. So the finished frames of Ray's own code along the
    failure (and the callers they hold, in Ray's ended loop thread) are cleared: their
    locals go, the traceback's text stays, and no frame of the user's is touched."""
    try:
        yield
    except BaseException as error:
        # The failed execution's loop thread may still be ending (a loaded machine): its
        # frames can be cleared only once it has
        for thread in threading.enumerate():
            if thread.name.startswith("StreamingExecutor-") and getattr(thread, "_shutdown",
                                                                        False):
                thread.join(timeout=30)
        clear_ray_frames(error)
        raise


GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def clear_ray_frames(error: BaseException) -> None:
    """Clear the locals of Ray's finished frames along `error`, its causes and contexts.
    A traceback's frames below its first have finished (the error left them); a caller
    reached through `f_back` may still run (clear refuses it) or be a suspended generator
    (clear would close it: skipped)."""
    def ray_frame(frame) -> bool:
        return frame.f_globals.get("__name__", "").startswith("ray.")

    chain, seen, cleared = [error], set(), set()
    while chain:  # the cause and the context both: Ray chains its own errors in either
        link = chain.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        chain += [link.__cause__, link.__context__]
        finished = [frame for frame, _ in traceback.walk_tb(link.__traceback__)][1:]
        callers = [caller for frame in finished for caller in iter_callers(frame)
                   if not caller.f_code.co_flags & GENERATOR_FLAGS]
        for frame in finished + callers:
            if id(frame) not in cleared and ray_frame(frame):
                cleared.add(id(frame))
                try:
                    frame.clear()
                except RuntimeError:  # still running
                    pass


def iter_callers(frame) -> Iterator:
    frame = frame.f_back
    while frame is not None:
        yield frame
        frame = frame.f_back


def resolve(value):
    """A value handed to an actor: itself here, fetched from the object store on Ray."""
    ray = sys.modules.get("ray")  # Ray not imported: nothing here is an object reference
    return ray.get(value) if ray and isinstance(value, ray.ObjectRef) else value
