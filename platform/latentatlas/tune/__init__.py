"""Ray Tune sweeps: specs (`sweep`) and the runner that drives trials (`runner`)."""

__all__ = ["runner", "sweep"]
