"""A Ray Data pipeline over a pool of actors that fails gives its CPUs back at once, while
its error is still held (a notebook's last error, a study's failed step, `pytest.raises`).
Left to Ray Data 2.60, the pool lives as long as anything references it (the error's frames,
Ray Data's queues on a loaded machine): the next training that asks for the whole node then
waits forever, silently. Both ways a pipeline ends: read back (the analyses'
`map_with_actors`) and written (the encode's `write_parquet`)."""

import time

import pytest

from latentatlas.batches import actor_map, map_with_actors


def free_cpus(ray) -> float:
    return ray.available_resources().get("CPU", 0.0)


@pytest.mark.parametrize("end", ["read", "write"])
def test_a_failed_actor_pipeline_gives_its_cpus_back_while_its_error_is_held(
        ray_session, tmp_path, end):
    class FailsAtItem8:  # local: Ray pickles it by value for its actors
        def __init__(self, use_gpu=False):
            pass

        def __call__(self, batch):
            if batch["id"][0] >= 8:
                raise ValueError("item 8 is bad")
            return batch

    total = ray_session.cluster_resources()["CPU"]
    deadline = time.monotonic() + 20  # an earlier test's pool may still be going
    while free_cpus(ray_session) < total and time.monotonic() < deadline:
        time.sleep(0.2)
    before = free_cpus(ray_session)
    assert before == total, f"{total - before} CPU held before the test (a leaked pool?)"
    source = ray_session.data.range(64, override_num_blocks=8)
    with pytest.raises(Exception, match="item 8 is bad") as held:
        if end == "read":
            map_with_actors(source, FailsAtItem8, batch_size=8, actors=1)
        else:
            actor_map(source, FailsAtItem8, batch_size=8, actors=1).write_parquet(
                str(tmp_path / "out"))
    deadline = time.monotonic() + 20
    while free_cpus(ray_session) < before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert free_cpus(ray_session) >= before, (
        f"{before - free_cpus(ray_session)} CPU still held by the failed pipeline's pool")
    del held  # held until here, as a notebook holds its last error
