"""Ray Train: the per-worker loop and the driver that runs it and records it in MLflow."""
