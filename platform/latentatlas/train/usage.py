"""What a training's machine was doing, epoch by epoch: so that a slow training can be told
from a busy machine. Sampled by rank 0 at each epoch's end, logged beside the epoch's metrics
as `system/*` (MLflow's own names); the node a worker ran on is tagged on its run."""

from __future__ import annotations

import os

import psutil
import torch

MB = 1024 * 1024


class SystemUsage:
    """CPU use over each epoch (psutil's since-last-call reading), memory, GPU memory."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.process = psutil.Process(os.getpid())
        psutil.cpu_percent(interval=None)  # the first reading starts the interval

    def sample(self) -> dict[str, float]:
        memory = psutil.virtual_memory()
        out = {"system/cpu_utilization_percentage": psutil.cpu_percent(interval=None),
               "system/system_memory_usage_megabytes": (memory.total - memory.available) / MB,
               "system/system_memory_usage_percentage": memory.percent,
               "system/process_memory_rss_megabytes": self.process.memory_info().rss / MB}
        if self.device.type == "cuda":
            out["system/gpu_memory_allocated_megabytes"] = \
                torch.cuda.max_memory_allocated(self.device) / MB
            torch.cuda.reset_peak_memory_stats(self.device)
        return out


def node_id() -> str | None:
    """The Ray node this process runs on (None outside Ray)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
