"""Ray Train: the per-worker loop (`loop`, what workers import: keep it light) and the driver
that runs it and records it in MLflow (`runner.train`)."""

__all__ = ["loop", "runner"]
