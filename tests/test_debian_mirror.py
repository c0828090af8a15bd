"""Debian's archive, as the ARM emulation fetches it: a mirror that fails for a while (5xx answers)
is tried again; one that stays down, refuses connections or lacks the file stops with one line
naming the URL and the fix; proxy settings are read when the download starts. A local HTTP server
plays the mirror."""

from __future__ import annotations

import lzma
import socket
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edgekd.emulation import debian
from edgekd.errors import EdgekdError

INDEX = "Package: zlib1g\nVersion: 1:1.2.13\nProvides: libz1\n\nPackage: libgcc-s1\nVersion: 12.2.0\n"


class Mirror(BaseHTTPRequestHandler):
    answers: list[int] = []  # the status of each request in turn; 200 once they run out

    def do_GET(self):
        status = self.answers.pop(0) if self.answers else 200
        body = lzma.compress(INDEX.encode()) if status == 200 else b""  # every request is for the index
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def fetch_from(monkeypatch, port: int) -> None:
    """edgekd's downloads go to 127.0.0.1:`port`, trying again at once."""
    monkeypatch.setattr(debian, "MIRROR", f"http://127.0.0.1:{port}/debian")
    monkeypatch.setattr(debian, "RETRY_AFTER", (0, 0))


@pytest.fixture
def mirror(monkeypatch):
    Mirror.answers = []  # none left over from another test
    server = ThreadingHTTPServer(("127.0.0.1", 0), Mirror)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fetch_from(monkeypatch, server.server_port)
    yield Mirror
    server.shutdown()
    server.server_close()


def test_a_mirror_that_fails_for_a_while_is_tried_again(mirror):
    mirror.answers = [503, 502]
    packages = debian._index("arm64")
    assert packages["libz1"]["Package"] == "zlib1g" and packages["libgcc-s1"]["Version"] == "12.2.0"
    assert mirror.answers == []  # both failures were met, and tried again


def test_a_mirror_that_stays_down_is_named_with_the_fix(mirror):
    mirror.answers = [503, 503, 503]
    with pytest.raises(EdgekdError, match=r"binary-arm64/Packages.xz failed \(HTTP Error 503.*EDGEKD_DEBIAN_MIRROR"):
        debian._index("arm64")


def test_a_missing_file_is_not_tried_again(mirror):
    mirror.answers = [404, 503]
    with pytest.raises(EdgekdError, match=r"failed \(HTTP Error 404"):
        debian._index("arm64")
    assert mirror.answers == [503]  # one request only


def test_a_mirror_that_refuses_connections_is_named_with_the_fix(monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fetch_from(monkeypatch, port)
    url = rf"127.0.0.1:{port}/debian/dists/bookworm/main/binary-arm64/Packages.xz"
    with pytest.raises(EdgekdError, match=rf"{url} failed \(<urlopen error .*refused.*EDGEKD_DEBIAN_MIRROR"):
        debian._index("arm64")


def test_proxy_settings_are_read_at_each_download(mirror, monkeypatch):
    """A process that once ran offline (a closed proxy, as tests of offline behaviour set it)
    downloads again when the setting is gone: urlopen's shared opener would keep the proxy."""
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    urllib.request.install_opener(None)  # whatever ran before, urlopen builds its opener now
    try:
        with pytest.raises(OSError):
            urllib.request.urlopen(debian.MIRROR, timeout=5)  # builds urlopen's shared opener, with the proxy
        monkeypatch.delenv("http_proxy")
        assert debian._index("arm64")["zlib1g"]["Version"] == "1:1.2.13"
    finally:
        urllib.request.install_opener(None)  # later tests' urlopen builds its opener afresh
