"""A device reached over SSH (`--device ssh://user@host[:port][?python=/path/python3]`).

edgekd copies the artifact and its own runtime sub-package (edgekd/runtime, which needs only
numpy and the runtime) to a temporary folder on the device, runs `python3 -m edgekd.runtime`
there with the device's own onnxruntime or OpenVINO, and reads back the same JSON a local run
prints. The OpenSSH client does the transport, so keys, agents, jump hosts and
~/.ssh/config work as they do for the user; EDGEKD_SSH_CONFIG names another ssh_config file.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from edgekd.errors import EdgekdError
from edgekd.formats import artifact_root

RUNTIME_DIR = Path(__file__).resolve().parents[1] / "runtime"
# the device gets this instead of edgekd/__init__.py, which would look for the rest of edgekd
SHIM = '"""edgekd runtime only, copied to a device by `--device ssh://`."""\n'
QUERY_KEYS = {"python"}


class SshDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = None
    host: str
    port: int = Field(22, ge=1, le=65535)
    python: str = "python3"
    connect_timeout_s: int = Field(10, ge=1)

    @property
    def name(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}{f':{self.port}' if self.port != 22 else ''}"

    def _ssh_options(self) -> list[str]:
        options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout_s}"]
        config = os.environ.get("EDGEKD_SSH_CONFIG")
        return (["-F", config] if config else []) + options

    def _destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def ssh(self, command: str, timeout: float, stdin: bytes | IO[bytes] | None = None) -> subprocess.CompletedProcess:
        argv = ["ssh", *self._ssh_options(), "-p", str(self.port), self._destination(), command]
        feed = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin or subprocess.DEVNULL}
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout, **feed)
        except FileNotFoundError:
            raise EdgekdError("the OpenSSH client (ssh) is not installed; install openssh-client") from None
        except subprocess.TimeoutExpired:
            raise EdgekdError(f"device {self.name}: '{command[:60]}' timed out after {timeout:.0f} s") from None
        if done.returncode == 255:  # ssh's own failure: the device was not reached
            raise EdgekdError(f"cannot reach device {self.name} over ssh: {_last_line(done.stderr)}")
        return done

    def check(self) -> None:
        """Fails now, not after training, when the device cannot be reached."""
        self.ssh("true", self.connect_timeout_s + 5)

    def copy(self, local: Path, remote_dir: str, timeout: float) -> None:
        """A file or folder into remote_dir, as a tar stream: needs only tar on the device
        (no sftp subsystem, which small boards' SSH servers often lack)."""
        with tempfile.TemporaryFile() as stream:
            with tarfile.open(fileobj=stream, mode="w") as tar:
                tar.add(local, arcname=local.name)
            stream.seek(0)
            done = self.ssh(f"tar xf - -C {shlex.quote(remote_dir)}", timeout, stdin=stream)
        if done.returncode != 0:
            raise EdgekdError(f"cannot copy {local} to device {self.name}: {_last_line(done.stderr)}")


def _last_line(data: bytes | str) -> str:
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    return (text.strip().splitlines() or ["no output"])[-1]


def parse_device(url: str) -> SshDevice:
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise EdgekdError(f"device '{url}' is not an ssh:// URL; write ssh://user@host[:port][?python=/path/python3]")
    query = parse_qs(parts.query)
    unknown = set(query) - QUERY_KEYS
    if unknown:
        raise EdgekdError(f"device '{url}': unknown option {sorted(unknown)}; the only option is ?python=PATH")
    try:
        port = parts.port or 22
    except ValueError:
        raise EdgekdError(f"device '{url}': the port must be a number from 1 to 65535") from None
    python = query.get("python", ["python3"])[0]
    return SshDevice(user=parts.username, host=parts.hostname, port=port, python=python)


def runtime_bundle() -> bytes:
    """A tar.gz of edgekd/runtime/*.py plus the shim edgekd/__init__.py."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        shim = SHIM.encode()
        info = tarfile.TarInfo("edgekd/__init__.py")
        info.size = len(shim)
        tar.addfile(info, io.BytesIO(shim))
        for source in sorted(RUNTIME_DIR.glob("*.py")):
            tar.add(source, arcname=f"edgekd/runtime/{source.name}")
    return buffer.getvalue()


class Session:
    """A temporary folder on the device holding the runtime; removed on exit."""

    PROBE = (
        "import json, platform; from edgekd.runtime import RUNTIMES, runtime_version; "
        "print(json.dumps({'arch': platform.machine(), 'runtimes': {n: runtime_version(n) for n in RUNTIMES}}))"
    )

    def __init__(self, device: SshDevice, timeout_s: float = 300):
        self.device, self.timeout_s = device, timeout_s
        self.folder = ""

    def __enter__(self) -> Session:
        made = self.device.ssh("mktemp -d", self.timeout_s)
        if made.returncode != 0:
            raise EdgekdError(f"device {self.device.name}: cannot make a temporary folder: {_last_line(made.stderr)}")
        self.folder = made.stdout.decode().strip()
        untar = self.device.ssh(f"tar xzf - -C {shlex.quote(self.folder)}", self.timeout_s, stdin=runtime_bundle())
        if untar.returncode != 0:
            raise EdgekdError(f"device {self.device.name}: cannot unpack edgekd's runtime: {_last_line(untar.stderr)}")
        probe = self.python(f"-c {shlex.quote(self.PROBE)}")
        if probe.returncode != 0:
            raise EdgekdError(
                f"device {self.device.name}: {self.device.python} cannot run edgekd's runtime "
                f"({_last_line(probe.stderr)}); install numpy there or pass ?python=PATH"
            )
        self.facts = json.loads(probe.stdout.decode().strip().splitlines()[-1])
        return self

    def __exit__(self, *exc) -> None:
        if self.folder:
            self.device.ssh(f"rm -rf {shlex.quote(self.folder)}", self.timeout_s)

    def python(self, args: str) -> subprocess.CompletedProcess:
        folder = shlex.quote(self.folder)
        return self.device.ssh(f"cd {folder} && PYTHONPATH={folder} {self.device.python} {args}", self.timeout_s)

    def measure(self, artifact_path: str, runtime: str, threads: int, warmup: int, runs: int) -> dict:
        """The JSON of `python -m edgekd.runtime` on the device, with status, as bench rows hold it."""
        path = Path(artifact_path)
        local = artifact_root(path)
        self.device.copy(local, self.folder, self.timeout_s)
        remote = f"{local.name}/{path.name}" if local != path else path.name
        args = f"-m edgekd.runtime {shlex.quote(remote)} --runtime {shlex.quote(runtime)}"
        done = self.python(f"{args} --threads {threads} --warmup {warmup} --runs {runs}")
        if done.returncode != 0:
            return {"status": "failed", "reason": f"on {self.device.name}: {_last_line(done.stderr)}"}
        return {"status": "ok"} | json.loads(done.stdout.decode().strip().splitlines()[-1])
