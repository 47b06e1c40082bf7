"""skysweep: hyperparameter sweeps from one task file, launched as SkyPilot jobs and ranked."""

__version__ = "0.2.0.dev0"
