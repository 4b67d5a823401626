"""Ray Tune sweeps: their specs (`spec`) and the Tuner with a driver per trial (`tuner`)."""

__all__ = ["spec", "tuner"]
