"""skysweep: hyperparameter sweeps from one task file, launched as SkyPilot jobs and ranked.

Inside a job, ``skysweep.log(step, {...})`` and ``skysweep.finish({...})`` report a trial's
history and metrics (see ``skysweep.job``).
"""

__version__ = "0.2.0.dev0"
__all__ = ["finish", "log"]

# Neither `from typing import TYPE_CHECKING` nor `from __future__ import annotations`: every
# CLI start imports this package, and typing alone costs ~20 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from skysweep.job import finish as finish
    from skysweep.job import log as log


def __getattr__(name: str) -> "Any":
    # Loaded on first use: every CLI start imports this package, and only jobs report.
    if name in ("log", "finish"):
        from skysweep import job

        return getattr(job, name)
    raise AttributeError(f"module 'skysweep' has no attribute {name!r}")
