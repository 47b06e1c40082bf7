"""Object storage: the sweep's source of truth (DESIGN.md §4).

``file://`` for the local default, ``s3://`` (AWS or any S3-compatible endpoint: R2, MinIO)
through boto3. Keys are relative to the store URL; a sweep lives under ``<sweep_id>/``.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import itertools
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlparse

from skysweep.errors import StoreError, StoreSetupError, UsageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_SCHEMES = ("s3", "r2")
MAX_CONNECTIONS = 64
MAX_ATTEMPTS = 8
"""Attempts per request for throttling (SlowDown) and transient 5xx errors, with botocore's
adaptive retry mode; ``SKYSWEEP_S3_MAX_ATTEMPTS`` overrides it."""
CONNECT_ATTEMPTS = 2
"""Attempts per request when the endpoint cannot be reached at all (connection refused,
unknown host, connect timeout): a wrong endpoint fails in about a second instead of after
the full throttling backoff (8 attempts there take ~35 s)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str
    """Changes whenever the object changes (S3 ETag; mtime and size for files)."""


class Store(Protocol):
    """A bucket prefix or a folder, addressed by relative keys such as ``sid/sweep.json``."""

    url: str

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""

    def get_from(self, key: str, offset: int) -> bytes | None:
        """The object's bytes from ``offset`` on (``b""`` when it has no more), or None when
        there is no such object: one ranged read, for a file that only grows."""

    def put(self, key: str, data: bytes) -> None: ...

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object only if there is none; False when one exists. Atomic: of two
        writers racing for one key, exactly one gets True."""

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object under ``prefix`` (recursively)."""

    def children(self, prefix: str) -> builtins.list[str]:
        """The names of the immediate sub-folders of ``prefix``."""

    def upload_tree(self, local: Path, prefix: str) -> None:
        """Copy a local folder's files under ``prefix``, leaving other objects alone."""

    def local_folder(self, prefix: str) -> Path | None:
        """Where ``prefix`` is on this machine's disk, when the store is a folder."""


R = TypeVar("R")
T = TypeVar("T")


def concurrently(
    store: Store, function: Callable[[T], R], items: Sequence[T], workers: int = 32
) -> list[R]:
    """``function`` over ``items``, in order: in threads for a remote store, where each call
    waits on the network; in turn for a folder, where threads only cost."""
    if len(items) <= 1 or store.local_folder("") is not None:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max(1, min(workers, len(items)))) as pool:
        return list(pool.map(function, items))


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


class FileStore:
    """A folder on this machine, written atomically so readers never see half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    def get(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _file_error(exc, "read", self.root / key) from exc

    def get_from(self, key: str, offset: int) -> bytes | None:
        try:
            with (self.root / key).open("rb") as file:
                file.seek(offset)
                return file.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _file_error(exc, "read", self.root / key) from exc

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        try:
            os.replace(_beside(path, data), path)
        except OSError as exc:
            raise _file_error(exc, "write", path) from exc

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self.root / key
        try:
            temporary = _beside(path, data)
            try:
                os.link(temporary, path)  # fails when the target exists: an exclusive create
            except FileExistsError:
                return False
            finally:
                os.unlink(temporary)
        except OSError as exc:
            raise _file_error(exc, "write", path) from exc
        return True

    def delete(self, key: str) -> None:
        try:
            (self.root / key).unlink(missing_ok=True)
        except OSError as exc:
            raise _file_error(exc, "delete", self.root / key) from exc

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = os.path.join(self.root, prefix) if prefix else str(self.root)
        found: list[ObjectInfo] = []
        root = len(str(self.root)) + 1
        # os.scandir gives each entry's type and stat from the directory read itself: a look
        # at 10,000 finished records must not cost 20,000 extra system calls.
        pending = [base]
        try:
            while pending:
                try:
                    entries = os.scandir(pending.pop())
                except FileNotFoundError:
                    continue
                with entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
                        elif entry.is_file() and not entry.name.startswith("."):
                            stat = entry.stat()
                            etag = f"{stat.st_mtime_ns}-{stat.st_size}"
                            found.append(ObjectInfo(entry.path[root:], etag))
        except OSError as exc:
            raise _file_error(exc, "list", Path(base)) from exc
        return found

    def stat(self, key: str) -> ObjectInfo | None:
        """One object's key and ETag, or None: a look at a handful of known keys."""
        try:
            stat = os.stat(os.path.join(self.root, key))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _file_error(exc, "read", self.root / key) from exc
        return ObjectInfo(key, f"{stat.st_mtime_ns}-{stat.st_size}")

    def children(self, prefix: str) -> builtins.list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        try:
            return sorted(
                p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")
            )
        except OSError as exc:
            raise _file_error(exc, "list", base) from exc

    def upload_tree(self, local: Path, prefix: str) -> None:
        target = self.root / prefix
        if local.resolve() == target.resolve():
            return
        for path in _walk(local):
            destination = target / path.relative_to(local)
            try:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)
            except OSError as exc:
                raise _file_error(exc, "write", destination) from exc

    def local_folder(self, prefix: str) -> Path | None:
        return self.root / prefix


def _beside(path: Path, data: bytes) -> str:
    """``data`` in a hidden file next to ``path``, whole, so that renaming or linking it into
    place lets readers see all of it or nothing."""
    # A name no other writer uses (this process's token and a counter) rather than
    # tempfile's retry loop, and the folder made only when it is missing: a sweep writes a
    # few files per trial, so these calls are most of what a write costs.
    temporary = path.parent / f".{path.name}.{_WRITER}-{os.getpid()}.{next(_WRITES)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(temporary, flags, 0o666)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temporary, flags, 0o666)
    with os.fdopen(fd, "wb") as tmp:
        tmp.write(data)
    return str(temporary)


_WRITER = secrets.token_hex(4)
_WRITES = itertools.count()


_NOT_PERMITTED = (errno.EACCES, errno.EPERM, errno.EROFS)


def _file_error(exc: OSError, action: str, path: Path) -> StoreError:
    """A folder we may not use (permissions, a read-only mount) is a setup problem; anything
    else (a full disk, an I/O error) stays an ordinary store error."""
    message = f"cannot {action} {path}: {exc}"
    if exc.errno in _NOT_PERMITTED:
        return StoreSetupError(
            message,
            hint="check that the store folder is writable, or choose another with "
            "--store file:///path",
        )
    return StoreError(message)


def _walk(base: Path) -> Iterator[Path]:
    """The regular files under ``base``: a job's broken links, pipes or sockets are skipped."""
    for directory, _, files in os.walk(base):
        for name in files:
            path = Path(directory) / name
            if path.is_file():
                yield path


class S3Store:
    """A bucket prefix over boto3, with botocore's own retry modes for throttling and 5xx."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        max_attempts: int | None = None,
        connect_timeout: float = 5,
    ) -> None:
        parsed = urlparse(url)
        self.url = url.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.endpoint_url = endpoint_url
        self.max_attempts = max_attempts or _env_int("SKYSWEEP_S3_MAX_ATTEMPTS", MAX_ATTEMPTS)
        self.connect_timeout = connect_timeout
        if not self.bucket:
            raise UsageError(f"store URL {url!r} names no bucket", hint="write s3://BUCKET/PREFIX")
        self._client: S3Client | None = None
        self._making_client = threading.Lock()

    def connect_in_background(self) -> None:
        """Start making the boto3 client now, in a thread: importing boto3 and loading its
        S3 model take ~0.4 s of CPU, which then runs while the caller waits on other
        requests (SkyPilot's, before a launch) instead of after them."""
        threading.Thread(target=self._make_client_quietly, daemon=True).start()

    def _make_client_quietly(self) -> None:
        # A failure here is the caller's to see, with its context, when it asks again.
        with contextlib.suppress(Exception):
            self.client  # noqa: B018 - made for its side effect

    @property
    def client(self) -> S3Client:
        if self._client is not None:
            return self._client
        with self._making_client:  # one client, even when threads ask at once
            if self._client is not None:
                return self._client
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"total_max_attempts": self.max_attempts, "mode": "adaptive"},
                max_pool_connections=MAX_CONNECTIONS,
                connect_timeout=self.connect_timeout,
                read_timeout=30,
            )
            client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url, config=config
            )
            client.meta.events.register("needs-retry.s3", _give_up_when_unreachable)
            self._client = client
        return self._client

    def _key(self, key: str) -> str:
        return join(self.prefix, key)

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read()
        except ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._translate(exc, key) from exc
        except Exception as exc:
            raise self._translate(exc, key) from exc

    def get_from(self, key: str, offset: int) -> bytes | None:
        from botocore.exceptions import ClientError

        if offset <= 0:
            return self.get(key)
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={offset}-"
            )
            return response["Body"].read()
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("NoSuchKey", "404"):
                return None
            if code in ("InvalidRange", "416"):
                return b""  # nothing past the offset yet
            raise self._translate(exc, key) from exc
        except Exception as exc:
            raise self._translate(exc, key) from exc

    def put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except Exception as exc:
            raise self._translate(exc, key) from exc

    def put_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
            )
        except ClientError as exc:
            # 409 ConditionalRequestConflict: another conditional write to the key is under way.
            if _error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise self._translate(exc, key) from exc
        except Exception as exc:
            raise self._translate(exc, key) from exc
        return True

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise self._translate(exc, key) from exc

    def list(self, prefix: str) -> list[ObjectInfo]:
        full = (self._key(prefix) + "/") if self._key(prefix) else ""
        found: list[ObjectInfo] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    relative = key[len(self.prefix) + 1 :] if self.prefix else key
                    found.append(ObjectInfo(relative, str(item.get("ETag", ""))))
        except Exception as exc:
            raise self._translate(exc, prefix) from exc
        return found

    def children(self, prefix: str) -> builtins.list[str]:
        full = (self._key(prefix) + "/") if self._key(prefix) else ""
        names: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    names.append(common["Prefix"][len(full) :].strip("/"))
        except Exception as exc:
            raise self._translate(exc, prefix) from exc
        return sorted(names)

    def upload_tree(self, local: Path, prefix: str) -> None:
        for path in _walk(local):
            self.put(join(prefix, str(path.relative_to(local))), path.read_bytes())

    def local_folder(self, prefix: str) -> Path | None:
        return None

    def _translate(self, exc: BaseException, key: str) -> StoreError:
        """Setup problems (no credentials, an unreachable endpoint, no bucket, no access)
        become :class:`StoreSetupError`; throttling that outlived the retries and anything
        unknown stay a plain :class:`StoreError`."""
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        where = f"s3://{self.bucket}/{self._key(key)}"
        endpoint = (
            self.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or "AWS S3"
        )
        if isinstance(exc, NoCredentialsError):
            return StoreSetupError(
                f"no credentials for {where}",
                hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or "
                "~/.aws/credentials",
            )
        if isinstance(exc, EndpointConnectionError):
            return StoreSetupError(
                f"cannot reach the object store endpoint {endpoint} for {where}",
                hint="check the endpoint URL (SKYSWEEP_S3_ENDPOINT_URL or "
                "AWS_ENDPOINT_URL) and your network",
            )
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            if code == "NoSuchBucket":
                return StoreSetupError(
                    f"bucket '{self.bucket}' does not exist at {endpoint}",
                    hint=f"create it (aws s3 mb s3://{self.bucket}) or fix the store URL",
                )
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return StoreSetupError(
                    f"access denied to {where} ({code}); credentials came from "
                    f"{_credential_source()}",
                    hint="check that these credentials may read and write the bucket",
                )
            return StoreError(f"object store error on {where}: {code}: {exc}")
        return StoreError(f"object store error on {where}: {exc}")


def _give_up_when_unreachable(
    attempts: int, caught_exception: BaseException | None = None, **_: Any
) -> None:
    """A ``needs-retry`` hook: stop retrying after :data:`CONNECT_ATTEMPTS` when the endpoint
    cannot be reached at all. Throttling and 5xx answers keep botocore's full retry budget."""
    from botocore.exceptions import EndpointConnectionError

    if isinstance(caught_exception, EndpointConnectionError) and attempts >= CONNECT_ATTEMPTS:
        raise caught_exception


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return max(1, int(value)) if value else default
    except ValueError:
        raise UsageError(f"{name}={value!r} is not a whole number") from None


def _error_code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _credential_source() -> str:
    try:
        import boto3

        credentials = boto3.session.Session().get_credentials()
    except Exception:
        return "an unknown source"
    if credentials is None:
        return "nowhere (no credentials found)"
    return {
        "env": "the environment (AWS_ACCESS_KEY_ID)",
        "shared-credentials-file": "~/.aws/credentials",
        "config-file": "~/.aws/config",
        "iam-role": "the instance's IAM role",
        "assume-role": "an assumed role",
    }.get(credentials.method, credentials.method)


def open_store(url: str, *, endpoint_url: str | None = None, origin: str = "store URL") -> Store:
    """The store at ``url``: ``file://``, ``s3://``/``r2://``, or an absolute path (``/path``,
    ``~/path``) meaning ``file://`` that path. ``origin`` names where the URL came from (a
    flag, a variable, a config file) in the error for a URL that cannot be used."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(os.path.expanduser(parsed.netloc + parsed.path))
        return FileStore(path.resolve())
    if parsed.scheme in S3_SCHEMES:
        return S3Store(url, endpoint_url=endpoint_url)
    if not parsed.scheme and url.startswith(("/", "~")):
        # No bucket name starts with '/' or '~', so a path that does is a folder for sure.
        return FileStore(Path(os.path.expanduser(url)).resolve())
    if not parsed.scheme:
        # 'my-bucket/x' could be a bucket or a folder: guessing "folder" would hide a sweep's
        # results on one machine while the user looks for them in the bucket.
        folder = Path(url).resolve()
        raise UsageError(
            f"{origin} {url!r} has no scheme, so it could be a bucket or a folder",
            hint=f"write s3://{url.strip('/')} for a bucket, or file://{folder} (or the "
            f"absolute path {folder}) for a folder",
        )
    raise UsageError(
        f"{origin} {url!r} has an unknown scheme '{parsed.scheme}'",
        hint="use file:///path (or an absolute path), s3://bucket/prefix or r2://bucket/prefix",
    )
