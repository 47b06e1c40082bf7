"""skysweep: hyperparameter sweeps from one task file, launched as SkyPilot jobs and ranked."""

__version__ = "0.1.0"
