"""Run SkyPilot's real API server on loopback, with AWS faked by moto.

No cloud, no network: AWS API calls go to a local ``moto`` server, the AWS
catalog is a tiny hand-written CSV, usage collection is disabled, and the API
server (with the managed-jobs controller consolidated into it) listens on a
free 127.0.0.1 port under an isolated ``HOME``. SkyPilot copies files with the real
``rsync`` (Debian package ``rsync``); without it the server is not started and the error
says how to install it.

Usage::

    from tests.sky_api_server import running_sky_api_server, apply_env

    with running_sky_api_server(tmp_path) as info:
        # Child processes: pass env=info.env
        subprocess.run(['sky', 'jobs', 'queue'], env=info.env, check=True)
        # In-process SDK: the env MUST be applied before `import sky` (see
        # apply_env's docstring).
        with apply_env(info):
            import sky
            ...

This module has no pytest dependency and does not import ``sky`` itself (all
SkyPilot calls are made in subprocesses), so importing it never freezes
HOME-derived paths inside SkyPilot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

# Region / zones used everywhere. moto's fixed zone-id -> zone-name mapping
# for us-east-1 is: use1-az6=a, use1-az1=b, use1-az2=c, use1-az4=d,
# use1-az3=e, use1-az5=f. The catalog's AvailabilityZone column holds zone
# IDs; SkyPilot maps them to names by calling DescribeAvailabilityZones
# against moto, and silently DROPS rows whose zone id moto does not know.
REGION = "us-east-1"

VMS_CSV_HEADER = (
    "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,"
    "MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone,"
    "Arch"
)
VMS_CSV_ROWS = [
    "m6i.large,,,2.0,8.0,,0.096,0.04,us-east-1,use1-az2,x86_64",
    "m6i.large,,,2.0,8.0,,0.096,0.041,us-east-1,use1-az4,x86_64",
    "m6i.xlarge,,,4.0,16.0,,0.192,0.08,us-east-1,use1-az2,x86_64",
    "m6i.2xlarge,,,8.0,32.0,,0.384,0.16,us-east-1,use1-az2,x86_64",
    "m6i.2xlarge,,,8.0,32.0,,0.384,0.17,us-east-1,use1-az4,x86_64",
    "c6i.4xlarge,,,16.0,32.0,,0.68,0.3,us-east-1,use1-az2,x86_64",
    "r6i.large,,,2.0,16.0,,0.126,0.05,us-east-1,use1-az2,x86_64",
    (
        "g5.xlarge,A10G,1.0,4.0,16.0,\"{'Gpus': [{'Name': 'A10G', "
        "'Manufacturer': 'NVIDIA', 'Count': 1, 'MemoryInfo': "
        "{'SizeInMiB': 24576}}], 'TotalGpuMemoryInMiB': 24576}\","
        "1.006,0.4,us-east-1,use1-az2,x86_64"
    ),
    (
        "p3.2xlarge,V100,1.0,8.0,61.0,\"{'Gpus': [{'Name': 'V100', "
        "'Manufacturer': 'NVIDIA', 'Count': 1, 'MemoryInfo': "
        "{'SizeInMiB': 16384}}], 'TotalGpuMemoryInMiB': 16384}\","
        "3.06,0.92,us-east-1,use1-az4,x86_64"
    ),
]

# Image tags that clouds/aws.py looks up (skypilot:custom-cpu-ubuntu etc.).
# The AMI id is deliberately one that moto does NOT know, see README notes in
# the demo: moto then rejects RunInstances, so no fake VM ever gets an SSH
# attempt (which would be non-loopback traffic).
FAKE_AMI = "ami-0123456789abcdef0"
IMAGE_TAGS = [
    "skypilot:custom-cpu-ubuntu",
    "skypilot:custom-cpu-ubuntu-arm64",
    "skypilot:custom-gpu-ubuntu",
    "skypilot:custom-gpu-ubuntu-cuda13",
    "skypilot:custom-gpu-ubuntu-arm64",
    "skypilot:custom-gpu-ubuntu-arm64-cuda13",
    "skypilot:k80-ubuntu-2004",
    "skypilot:neuron-ubuntu-2204",
    "skypilot:gpu-ubuntu-2204",
    "skypilot:cpu-ubuntu-2204",
]


# Files that `import sky` / the AWS catalog would otherwise DOWNLOAD from
# GitHub / S3 on first use (catalog/common.py:read_catalog).  Keys are paths
# relative to get_catalog_path('').
def _catalog_files(ami: str) -> dict[str, str]:
    images = ["Tag,Region,OS,OSVersion,ImageId,CreationDate"]
    for tag in IMAGE_TAGS:
        images.append(f"{tag},{REGION},ubuntu,22.04,{ami},20240101")
    quotas = ["InstanceType,OnDemandInstanceCode,SpotInstanceCode"]
    for row in VMS_CSV_ROWS:
        itype = row.split(",", 1)[0]
        if f"{itype}," not in "\n".join(quotas):
            quotas.append(f"{itype},L-1216C47A,L-34B43A08")
    return {
        "aws/vms.csv": "\n".join([VMS_CSV_HEADER, *VMS_CSV_ROWS]) + "\n",
        "aws/images.csv": "\n".join(images) + "\n",
        "aws/instance_quota_mapping.csv": "\n".join(quotas) + "\n",
        # utils/accelerator_registry.py reads these two (lazily).
        "common/accelerators.csv": textwrap.dedent("""\
            AcceleratorName,Clouds
            A10G,AWS
            V100,AWS
            """),
        "common/metadata.csv": textwrap.dedent("""\
            GPU,MemoryGB,Manufacturer
            A10G,24,NVIDIA
            V100,16,NVIDIA
            """),
    }


# Consolidation mode still "uploads" the task YAML and env files to the (local) controller
# with the real `rsync` (LocalProcessCommandRunner.rsync, no ssh), and
# backend_utils.check_rsync_installed() runs `rsync --version` first: without the binary
# every launch fails with "rsync: not found". It is a Debian package, never imitated here.
RSYNC_MISSING = (
    "SkyPilot needs the real rsync to launch jobs, also on a local API server, and this "
    "machine has none on PATH: install it with `apt-get install rsync` (or `sudo apt-get "
    "install -y rsync`); .ci/run does this on CI"
)


def require_rsync() -> str:
    """The path of the machine's rsync, or a clear error naming the package to install."""
    found = shutil.which("rsync")
    if found is None:
        raise RuntimeError(RSYNC_MISSING)
    return found


SKY_CONFIG_YAML = textwrap.dedent("""\
    # Written by tests/sky_api_server.py
    jobs:
      controller:
        consolidation_mode: true
    allowed_clouds:
      - aws
    aws:
      # Keep RunInstances simple; moto has a default VPC in every region.
      use_internal_ips: false
    """)

# Environment variables that must not leak from the developer's shell into
# the isolated server (they would point SkyPilot / boto3 elsewhere).
_STRIP_PREFIXES = (
    "AWS_",
    "SKYPILOT_",
    "SKY_",
    "BOTO_",
    "KUBECONFIG",
    "GOOGLE_",
    "AZURE_",
    "CLOUDSDK_",
)
_STRIP_EXACT = {
    "SKY_RUNTIME_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
    "XDG_RUNTIME_DIR",
}


@dataclasses.dataclass
class SkyServerInfo:
    home: pathlib.Path
    env: dict[str, str]
    moto_endpoint: str
    api_server_url: str
    # Extras (handy for debugging / tests).
    api_port: int = 0
    moto_port: int = 0
    catalog_dir: pathlib.Path | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    # Filled on exit: processes (with our HOME) that survived `sky api stop`
    # and had to be killed by the fallback.
    killed_leftovers: list[str] = dataclasses.field(default_factory=list)

    @property
    def api_server_log(self) -> pathlib.Path:
        return self.home / ".sky" / "api_server" / "server.log"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def queue_manager_port(api_port: int) -> int:
    """Mirror of sky.server.requests.queues.mp_queue.get_queue_manager_port.

    The API server ALSO binds an internal multiprocessing queue-manager port
    derived from its own port: 50000 + (11 + api_port - 46580) % 10000. If
    that one is taken, startup dies with "SkyPilot API server fails to start
    as port N is already in use by another process".
    """
    offset = api_port - 46580
    return 50011 if offset == 0 else 50000 + (11 + offset) % 10000


def pick_api_port(exclude: tuple = ()) -> int:
    for _ in range(200):
        port = free_port()
        if port in exclude:
            continue
        qport = queue_manager_port(port)
        if qport not in exclude and qport != port and _port_free(qport):
            return port
    raise RuntimeError("could not find a free API server port pair")


def build_env(
    home: pathlib.Path,
    moto_endpoint: str,
    api_port: int,
    memory_gb: float | None = 8,
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_STRIP_PREFIXES) and k not in _STRIP_EXACT
    }
    api_url = f"http://127.0.0.1:{api_port}"
    env.update(
        {
            "HOME": str(home),
            # --- AWS -> moto -------------------------------------------------
            # boto3/botocore >= 1.28 honour AWS_ENDPOINT_URL for every service
            # (ec2, sts, s3, iam, service-quotas, ...), including the clients
            # SkyPilot creates inside the API server and its workers.
            "AWS_ENDPOINT_URL": moto_endpoint,
            "AWS_SHARED_CREDENTIALS_FILE": str(home / ".aws" / "credentials"),
            "AWS_CONFIG_FILE": str(home / ".aws" / "config"),
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",  # no 169.254.169.254 probing
            # --- SkyPilot ----------------------------------------------------
            "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
            "SKYPILOT_API_SERVER_LOCAL_PORT": str(api_port),
            "SKYPILOT_API_SERVER_ENDPOINT": api_url,
            # Clients (SDK/CLI) must never silently auto-start ANOTHER local API
            # server (they do if the endpoint is a 127.0.0.1 URL that is down).
            # With this set they raise ApiServerConnectionError instead. It is
            # removed only for the `sky api start` subprocess itself.
            "SKYPILOT_DISABLE_LOCAL_API_SERVER": "1",
            "SKYPILOT_MINIMIZE_LOGGING": "1",
            # Never let requests/urllib route loopback through a proxy.
            "NO_PROXY": "127.0.0.1,localhost,::1",
            "no_proxy": "127.0.0.1,localhost,::1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if memory_gb is not None:
        # SkyPilot sizes the consolidated jobs-controller pool and the
        # API-server worker pools from total RAM (common_utils.get_mem_size_gb,
        # which honours this override). On a 23 GB box it would start 12
        # controller processes at boot, which on 2 cores makes the first
        # requests crawl. 8 GB -> 2 controllers, 4 long + 8 short workers.
        env["SKYPILOT_POD_MEMORY_GB_LIMIT"] = str(memory_gb)
    # Make `sky` resolvable in subprocesses even if PATH is minimal.
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def _wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited rc={proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
                return
        except urllib.error.HTTPError:
            return  # Server answered (any status) -> it is up.
        except Exception as e:  # pylint: disable=broad-except
            last = e
            time.sleep(0.2)
    raise TimeoutError(f"{url} not up after {timeout}s: {last!r}")


def _run(
    cmd: list[str],
    env: dict[str, str],
    timeout: float,
    check: bool = True,
    cwd: str | None = None,
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd,
        env=env,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{cmd} failed rc={proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n"
            f"--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def compute_catalog_dir(env: dict[str, str]) -> pathlib.Path:
    """Asks SkyPilot itself where it will look for catalogs under `env`.

    sky.catalog.common computes the directory ONCE at import time from
    $SKY_RUNTIME_DIR (if set) else $HOME: <root>/.sky/catalogs/<schema>/.
    """
    out = (
        _run(
            [
                sys.executable,
                "-c",
                'from sky.catalog import common; print(common.get_catalog_path(""))',
            ],
            env,
            timeout=120,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    return pathlib.Path(out)


def write_home_files(home: pathlib.Path, env: dict[str, str], ami: str = FAKE_AMI) -> pathlib.Path:
    (home / ".aws").mkdir(parents=True, exist_ok=True)
    (home / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    (home / ".aws" / "config").write_text(f"[default]\nregion = {REGION}\noutput = json\n")
    (home / ".sky").mkdir(parents=True, exist_ok=True)
    (home / ".sky" / "config.yaml").write_text(SKY_CONFIG_YAML)
    catalog_dir = compute_catalog_dir(env)
    assert str(catalog_dir).startswith(str(home)), catalog_dir
    for rel, text in _catalog_files(ami).items():
        path = catalog_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return catalog_dir


def _kill_tree(pid: int, timeout: float = 10) -> None:
    try:
        import psutil  # pylint: disable=import-outside-toplevel
    except ImportError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        return
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [*parent.children(recursive=True), parent]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout)


def _processes_with_home(home: pathlib.Path) -> list:
    """Every process whose environment has HOME=<home> (leftover servers)."""
    try:
        import psutil  # pylint: disable=import-outside-toplevel
    except ImportError:
        return []
    found = []
    me = os.getpid()
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.environ().get("HOME") == str(home):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def _kill_leftovers(home: pathlib.Path, timeout: float = 10) -> list[str]:
    import psutil  # pylint: disable=import-outside-toplevel

    procs = _processes_with_home(home)
    desc = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            desc.append(f"{p.pid} {' '.join(p.cmdline())[:200]}")
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return desc


@contextlib.contextmanager
def running_sky_api_server(
    base_dir: pathlib.Path,
    *,
    start_timeout: float = 180,
    check_timeout: float = 180,
    stop_timeout: float = 60,
    ami: str = FAKE_AMI,
    memory_gb: float | None = 8,
    enable_aws: bool = True,
) -> Iterator[SkyServerInfo]:
    """Starts moto + a local SkyPilot API server; tears both down on exit.

    Everything lives under ``base_dir`` (HOME = base_dir/home). All waits are
    bounded; on exit (normal or exception) the API server is stopped with
    `sky api stop`, moto is killed, and any process still running with
    HOME=<our home> is killed as a last resort.
    """
    require_rsync()  # before anything starts: a missing rsync is a setup problem, said once
    base_dir = pathlib.Path(base_dir).resolve()
    home = base_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    moto_port = free_port()
    api_port = pick_api_port(exclude=(moto_port,))
    moto_endpoint = f"http://127.0.0.1:{moto_port}"
    env = build_env(home, moto_endpoint, api_port, memory_gb=memory_gb)
    info = SkyServerInfo(
        home=home,
        env=env,
        moto_endpoint=moto_endpoint,
        api_server_url=f"http://127.0.0.1:{api_port}",
        api_port=api_port,
        moto_port=moto_port,
    )
    moto_proc: subprocess.Popen | None = None
    moto_log = open(base_dir / "moto.log", "w", encoding="utf-8")  # noqa: SIM115 - closed in finally
    api_started = False
    try:
        # 1. moto
        t0 = time.monotonic()
        moto_proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
            env=env,
            stdout=moto_log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_http(f"{moto_endpoint}/moto-api/", timeout=60, proc=moto_proc)
        info.timings["moto_start"] = time.monotonic() - t0

        # 2. files (the catalog path is computed by SkyPilot under `env`)
        t0 = time.monotonic()
        info.catalog_dir = write_home_files(home, env, ami=ami)
        info.timings["write_files"] = time.monotonic() - t0

        # 3. API server
        t0 = time.monotonic()
        api_started = True  # From here on, always try `sky api stop`.
        for attempt in range(3):
            start_env = dict(env)
            start_env.pop("SKYPILOT_DISABLE_LOCAL_API_SERVER")
            try:
                _run(
                    ["sky", "api", "start", "--host", "127.0.0.1", "--port", str(api_port)],
                    start_env,
                    timeout=start_timeout,
                    cwd=str(home),
                )
                break
            except RuntimeError as e:
                # Port race (ours or the derived queue-manager port got taken
                # between picking and binding): retry on fresh ports.
                if (
                    "already in use"
                    not in (str(e) + info.api_server_log.read_text(errors="replace")[-3000:])
                    or attempt == 2
                ):
                    raise
                _kill_leftovers(home)
                api_port = pick_api_port(exclude=(moto_port, api_port))
                env.update(build_env(home, moto_endpoint, api_port, memory_gb=memory_gb))
                info.api_port = api_port
                info.api_server_url = f"http://127.0.0.1:{api_port}"
        _wait_http(f"{info.api_server_url}/api/health", timeout=30)
        info.timings["api_start"] = time.monotonic() - t0

        # 4. enable AWS (compute + storage) in the server's enabled-clouds db.
        if enable_aws:
            t0 = time.monotonic()
            out = _run(["sky", "check", "aws"], env, timeout=check_timeout, cwd=str(home))
            info.timings["sky_check"] = time.monotonic() - t0
            if "AWS: enabled" not in out.stdout:
                raise RuntimeError(
                    "`sky check aws` did not enable AWS:\n"
                    + out.stdout[-4000:]
                    + out.stderr[-4000:]
                )
        yield info
    finally:
        if api_started:
            t0 = time.monotonic()
            with contextlib.suppress(subprocess.TimeoutExpired):
                _run(["sky", "api", "stop"], env, timeout=stop_timeout, check=False, cwd=str(home))
            info.timings["api_stop"] = time.monotonic() - t0
        if moto_proc is not None:
            _kill_tree(moto_proc.pid)
            with contextlib.suppress(Exception):
                moto_proc.wait(timeout=10)
        moto_log.close()
        # Last resort: anything still running with our HOME (API server
        # workers, consolidated jobs controllers, ...).
        with contextlib.suppress(Exception):
            info.killed_leftovers = _kill_leftovers(home)


# Env vars that apply_env() sets / removes in os.environ.
@contextlib.contextmanager
def apply_env(info: SkyServerInfo) -> Iterator[None]:
    """Temporarily makes os.environ equal to ``info.env`` (restored on exit).

    IMPORTANT: SkyPilot freezes HOME-derived paths at import time, e.g.
    ``sky.catalog.common._ABSOLUTE_VERSIONED_CATALOG_DIR`` and the
    ``~/.sky/config.yaml`` / ``SKYPILOT_API_SERVER_ENDPOINT`` lookups (the
    client's ``get_server_url`` is lru-cached and the skypilot_config module
    loads the user config once). Therefore ``import sky`` must happen INSIDE
    this context (or in a process whose environment is ``info.env``) - if
    ``sky`` is already imported in this interpreter this function raises,
    unless ``allow_already_imported`` is set via the module attribute
    ``ALLOW_ALREADY_IMPORTED`` (then you are on your own). For multiple
    servers per test session, run the SDK in a subprocess instead.
    """
    if "sky" in sys.modules and not ALLOW_ALREADY_IMPORTED:
        raise RuntimeError(
            "apply_env() must be entered before `import sky` (SkyPilot caches "
            "HOME/endpoint-derived state at import time). Run SDK code in a "
            "fresh subprocess with env=info.env instead."
        )
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(info.env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


ALLOW_ALREADY_IMPORTED = False


def leftover_processes(info: SkyServerInfo) -> list[str]:
    """Human-readable list of processes still running with info.home."""
    out = []
    for p in _processes_with_home(info.home):
        with contextlib.suppress(Exception):
            out.append(f"{p.pid} {' '.join(p.cmdline())[:150]}")
    return out


__all__ = [
    "FAKE_AMI",
    "REGION",
    "SkyServerInfo",
    "apply_env",
    "build_env",
    "free_port",
    "leftover_processes",
    "require_rsync",
    "running_sky_api_server",
]

if __name__ == "__main__":  # Smoke test: python tests/sky_api_server.py DIR
    import tempfile

    d = (
        pathlib.Path(sys.argv[1])
        if len(sys.argv) > 1
        else pathlib.Path(tempfile.mkdtemp(prefix="skysrv-"))
    )
    hold = os.environ.get("HOLD_UNTIL_GONE")  # debugging: keep server up
    with running_sky_api_server(d) as i:
        print({k: v for k, v in dataclasses.asdict(i).items() if k != "env"})
        print(
            "export "
            + " ".join(
                f"{k}={v}" for k, v in i.env.items() if k.startswith(("AWS_", "SKYPILOT_", "HOME"))
            ),
            flush=True,
        )
        deadline = time.monotonic() + 1800
        while hold and os.path.exists(hold) and time.monotonic() < deadline:
            time.sleep(1)
    print("timings", i.timings)
    print("killed by fallback:", i.killed_leftovers)
    print("leftovers after exit:", leftover_processes(i))
    shutil.rmtree(d, ignore_errors=True) if len(sys.argv) <= 1 else None
