"""Packages from Debian's archive, fetched over HTTPS with Python alone and unpacked into a folder,
so they install the same on any Linux host (Debian, Ubuntu, Fedora, ...), with no apt, dpkg or root:
the arm64 root file system emulation runs in, and the host's own qemu-user with plugin support.

Debian 12 is chosen for its Python 3.11 and glibc 2.36: old enough for onnxruntime's
manylinux_2_28 wheels, new enough for OpenVINO's manylinux_2_35 ones. Each package's SHA-256
comes from the archive's index and is checked before the package is unpacked.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import re
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from edgekd.errors import EdgekdError

MIRROR = os.environ.get("EDGEKD_DEBIAN_MIRROR", "https://deb.debian.org/debian")
RELEASE = "bookworm"
PYTHON = "3.11"
ROOTS = [f"python{PYTHON}-minimal", f"libpython{PYTHON}-stdlib", "libstdc++6", "libgcc-s1", "zlib1g"]
# packages that only configure a full system (maintainer scripts, time zones, mime types)
UNNEEDED = {"debconf", "debconf-2.0", "perl-base", "dpkg", "tzdata", "media-types", "netbase", "readline-common"}


# seconds between attempts: a mirror may refuse connections for a while, then serve again
RETRY_AFTER = (5, 15, 45)


def _get(url: str) -> bytes:
    waits = list(RETRY_AFTER)
    while True:
        try:
            # an opener of its own reads the proxy settings now: urlopen's shared one keeps those
            # of its first use in this process, even after they change
            with urllib.request.build_opener().open(url, timeout=120) as response:
                return response.read()
        except OSError as e:
            lasting = isinstance(e, urllib.error.HTTPError) and e.code < 500  # a missing file stays missing
            if lasting or not waits:
                fix = "set EDGEKD_DEBIAN_MIRROR to a reachable mirror"
                raise EdgekdError(f"downloading {url} failed ({e}); {fix}") from e
            from edgekd.progress import log

            wait = waits.pop(0)
            log(f"downloading {url} failed ({e}); trying again in {wait} s")
            time.sleep(wait)


def _index(arch: str) -> dict[str, dict[str, str]]:
    text = lzma.decompress(_get(f"{MIRROR}/dists/{RELEASE}/main/binary-{arch}/Packages.xz")).decode()
    packages: dict[str, dict[str, str]] = {}
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
        if "Package" in fields:
            packages.setdefault(fields["Package"], fields)
            for provided in fields.get("Provides", "").split(","):
                packages.setdefault(provided.strip().split(" ")[0], fields)
    return packages


def closure(packages: dict[str, dict[str, str]], roots: list[str]) -> list[dict[str, str]]:
    """The packages `roots` need, following the first alternative of each dependency."""
    todo, chosen = list(roots), {}
    while todo:
        name = todo.pop()
        if name in UNNEEDED or name not in packages or packages[name]["Package"] in chosen:
            continue
        fields = packages[name]
        chosen[fields["Package"]] = fields
        for field in ("Pre-Depends", "Depends"):
            for dependency in filter(None, fields.get(field, "").split(",")):
                todo.append(re.split(r"[ :(|]", dependency.strip())[0])
    return list(chosen.values())


def _members(deb: bytes) -> dict[str, bytes]:
    """The members of a .deb (an `ar` archive)."""
    if not deb.startswith(b"!<arch>\n"):
        raise EdgekdError("a downloaded Debian package is not an ar archive; the mirror may be broken")
    members, at = {}, 8
    while at < len(deb):
        header = deb[at : at + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
        members[name] = deb[at + 60 : at + 60 + size]
        at += 60 + size + size % 2
    return members


def _unpack(deb: bytes, root: Path) -> None:
    data = next(v for k, v in _members(deb).items() if k.startswith("data.tar"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            # absolute links would point into the host's /lib: make them relative to the root
            if member.issym() and member.linkname.startswith("/"):
                depth = len(Path(member.name).parent.parts)
                member.linkname = "../" * depth + member.linkname.lstrip("/")
        tar.extractall(root, filter="tar")


def build(root: Path, roots: list[str] = ROOTS, arch: str = "arm64") -> list[str]:
    """Unpacks `roots` (Debian's arm64 Python by default) and what they depend on into `root`;
    returns the packages' names and versions."""
    packages = closure(_index(arch), roots)
    for fields in packages:
        deb = _get(f"{MIRROR}/{fields['Filename']}")
        if hashlib.sha256(deb).hexdigest() != fields["SHA256"]:
            raise EdgekdError(f"{fields['Filename']} does not match the archive's SHA-256; try again or another mirror")
        _unpack(deb, root)
    return [f"{p['Package']} {p['Version']}" for p in packages]
