"""Where sweeps are kept: the store URL and endpoint, from flags, environment or config.

Order, first found wins: the ``--store`` flag; ``SKYSWEEP_STORE``; ``store:`` in the user
config file (``$SKYSWEEP_CONFIG`` or ``~/.config/skysweep/config.yaml``); the default
``file://~/.skysweep/store``. The S3 endpoint: ``SKYSWEEP_S3_ENDPOINT_URL``, then
``endpoint_url:`` in the config file, then boto3's own (``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL``, profile settings). A store URL needs its scheme (``s3://``,
``r2://``, ``file://``); only an absolute path (``/path``, ``~/path``) may go without.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from skysweep.errors import UsageError
from skysweep.store import Store, open_store

DEFAULT_STORE = "file://~/.skysweep/store"


def config_path() -> Path:
    return Path(os.environ.get("SKYSWEEP_CONFIG", "~/.config/skysweep/config.yaml")).expanduser()


def _user_config() -> dict[str, Any]:
    path = config_path()
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read the skysweep config: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping such as 'store: s3://bucket/prefix'")
    return data


def store_setting(flag: str | None = None) -> tuple[str, str]:
    """The store URL and where it came from (for errors that name the setting to fix)."""
    if flag:
        return flag, "--store"
    if os.environ.get("SKYSWEEP_STORE"):
        return os.environ["SKYSWEEP_STORE"], "SKYSWEEP_STORE"
    configured = _user_config().get("store")
    if configured:
        return str(configured), f"'store:' in {config_path()}"
    return DEFAULT_STORE, "the default store"


def store_url(flag: str | None = None) -> str:
    return store_setting(flag)[0]


def endpoint_url() -> str | None:
    if os.environ.get("SKYSWEEP_S3_ENDPOINT_URL"):
        return os.environ["SKYSWEEP_S3_ENDPOINT_URL"]
    configured = _user_config().get("endpoint_url")
    return str(configured) if configured else None


def store_for(flag: str | None = None) -> Store:
    url, origin = store_setting(flag)
    return open_store(url, endpoint_url=endpoint_url(), origin=origin)


@dataclass(frozen=True)
class SweepRef:
    store: Store
    sweep_id: str

    @property
    def url(self) -> str:
        return f"{self.store.url.rstrip('/')}/{self.sweep_id}"


def sweep_ref(sweep: str, store_flag: str | None = None) -> SweepRef:
    """SWEEP is a sweep id in the chosen store, or the URL of the sweep's own prefix."""
    if "://" in sweep:
        parent, _, sweep_id = sweep.rstrip("/").rpartition("/")
        if not sweep_id or parent.endswith(":/"):
            raise UsageError(
                f"{sweep!r} is not a sweep URL",
                hint="give STORE_URL/SWEEP_ID, e.g. s3://bucket/sweeps/my-sweep-...",
            )
        return SweepRef(open_store(parent, endpoint_url=endpoint_url()), sweep_id)
    if "/" in sweep or not sweep:
        raise UsageError(
            f"{sweep!r} is not a sweep id",
            hint="give the id that 'skysweep up' printed, or the sweep's store URL",
        )
    return SweepRef(store_for(store_flag), sweep)
