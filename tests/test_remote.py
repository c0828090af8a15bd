"""`--device ssh://`: artifacts measured on a device reached through a real OpenSSH server,
started here on 127.0.0.1 with keys made for the test; the device's python is this one."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from edgekd.errors import EdgekdError
from edgekd.formats.artifact import Artifact
from edgekd.targets.remote import SshDevice, parse_device
from tests.helpers import assert_one_line_error, cli, edgekd

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on a free loopback port; yields (ssh URL, environment for edgekd)."""
    if not (os.path.exists(SSHD) and shutil.which("ssh")):
        if os.environ.get("CI") == "true":
            pytest.fail("openssh-server is missing in CI: .ci/run installs it")
        pytest.skip("openssh-server/client not installed (apt-get install openssh-server); CI installs it")
    root = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key)], check=True)
    shutil.copy(root / "user_key.pub", root / "authorized_keys")
    port = _free_port()
    (root / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
        f"PidFile {root / 'sshd.pid'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nLogLevel ERROR\n"
    )
    (root / "ssh_config").write_text(
        f"Host 127.0.0.1\n  IdentityFile {root / 'user_key'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {root / 'known_hosts'}\n  StrictHostKeyChecking accept-new\n"
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation folder sshd expects when root
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config"), "-p", str(port)])
    os.environ["EDGEKD_SSH_CONFIG"] = str(root / "ssh_config")
    url = f"ssh://{getpass.getuser()}@127.0.0.1:{port}?python={sys.executable}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                SshDevice(**parse_device(url).model_dump()).check()
                break
            except EdgekdError:
                time.sleep(0.3)
        yield url, port
    finally:
        server.terminate()
        server.wait(timeout=10)
        os.environ.pop("EDGEKD_SSH_CONFIG", None)


@pytest.fixture(scope="module")
def exported(request, tmp_path_factory) -> list[Artifact]:
    """fp32 artifacts of every format whose runtime is installed: ONNX and OpenVINO first, then
    the mobile formats, from the session's build where their extras are (conftest.mobile_build),
    else ONNX and OpenVINO exported here."""
    from edgekd.stages.export import ExportConfig, export
    from tests.helpers import PREPROCESSING, built_artifacts, trained_like

    try:
        _, out, _ = request.getfixturevalue("mobile_build")
    except pytest.skip.Exception:
        folder = tmp_path_factory.mktemp("device") / "artifacts"
        return export(ExportConfig(formats=["onnx", "openvino"]), {"fp32": trained_like("mobilenet_v3_small")},
                      PREPROCESSING, folder)  # fmt: skip
    built = built_artifacts(out).values()
    return [Artifact(**a.model_dump(exclude={"verification"})) for a in built if a.precision == "fp32"]


def test_bench_on_an_ssh_device_brings_back_the_local_json(sshd, exported):
    url, port = sshd
    paths = [a.path for a in exported]  # files (.onnx, .pte, .tflite) and folders' model files (OpenVINO, ncnn)
    done = edgekd("bench", *paths, "--target", "x86", "--device", url)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [dict(kv.split("=", 1) for kv in line.split()) for line in done.stdout.splitlines()]
    assert len(rows) == len(exported)
    for row, artifact in zip(rows, exported):
        assert row["status"] == "ok" and row["runtime"] == artifact.runtime, row
        assert row["device"] == f"{getpass.getuser()}@127.0.0.1:{port}"
        assert 0 < float(row["p50_ms"]) <= float(row["p90_ms"]) <= float(row["p99_ms"])
        assert float(row["peak_rss_mb"]) > 0 and float(row["fps"]) > 0


def test_device_runs_only_the_runtime_without_torch(sshd, exported):
    """What is shipped is edgekd/runtime alone: it must measure with torch absent."""
    from edgekd.runtime.measure import measure
    from edgekd.targets import remote

    url, _ = sshd
    device = parse_device(url)
    with remote.Session(device) as session:
        listing = session.device.ssh(f"cd {session.folder} && find edgekd -name '*.py' | sort", 30)
        files = listing.stdout.decode().split()
        assert "edgekd/__init__.py" in files and all(f.startswith("edgekd/runtime/") for f in files[1:])
        no_torch = session.python("-c 'import sys; sys.modules[\"torch\"] = None; import edgekd.runtime.measure'")
        assert no_torch.returncode == 0, no_torch.stderr
        result = session.measure(exported[0].path, "onnxruntime", 1, 1, 5)
    assert result["status"] == "ok" and result["runs"] == 5
    # the same JSON shape as a local run's
    assert set(result) - {"status"} == set(measure("onnxruntime", exported[0].path, 1, 1, 2))
    gone = device.ssh(f"test -e {session.folder}", 30)
    assert gone.returncode != 0  # the temporary folder is removed


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("http://pi@host", "is not an ssh:// URL"),
        ("ssh://", "is not an ssh:// URL"),
        ("ssh://pi@host:99999", "port must be a number"),
        ("ssh://pi@host?pyhton=/usr/bin/python3", "unknown option"),
    ],
)
def test_bad_device_urls_are_refused(url, fragment):
    with pytest.raises(EdgekdError, match=fragment):
        parse_device(url)


def test_bad_device_url_is_a_one_line_error_before_any_work(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    assert_one_line_error(cli("bench", str(onnx), "--device", "ssh://pi@host:0x16"), "port must be a number")


def test_unreachable_device_is_refused():
    if not shutil.which("ssh"):
        pytest.skip("the OpenSSH client is not installed")
    device = parse_device(f"ssh://nobody@127.0.0.1:{_free_port()}")  # nothing listens there
    with pytest.raises(EdgekdError, match="cannot reach device nobody@127.0.0.1"):
        device.check()


def test_device_of_another_architecture_is_refused(sshd, exported):
    from edgekd.stages.bench import BenchConfig, bench
    from edgekd.targets import load_target
    from edgekd.targets.kinds import place

    url, _ = sshd
    with pytest.raises(EdgekdError, match="is x86_64 but target 'arm' is aarch64"):
        bench(BenchConfig(warmup=1, runs=2), exported, place(load_target("arm"), parse_device(url)))
