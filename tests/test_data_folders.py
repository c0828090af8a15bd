"""Data folders as users' disks have them: links, loops, names in any encoding, permissions,
special files, long paths, hidden folders, split layouts. Each case follows the rule in
`edgekd.data.files` (README, "Data folders"): followed, skipped with a count, or refused with
one line; none gives a traceback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import unicodedata
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgekd.data.files import split_mismatch
from edgekd.data.images import usable_images
from edgekd.data.loading import DataConfig, load_data
from tests.bad_inputs import bad_input
from tests.helpers import assert_one_line_error, cli, write_config, write_image_folder

CAFE_NFC = unicodedata.normalize("NFC", "café")
CAFE_NFD = unicodedata.normalize("NFD", "café")
NOT_UTF8 = os.fsdecode(b"\xff\xfe.png")


def data(tmp_path: Path, classes: int = 2, per_class: int = 4) -> Path:
    return write_image_folder(tmp_path / "data", classes=classes, per_class=per_class)


def scan(root: Path, skip_bad: bool = False):
    found, _ = usable_images(root, skip_bad, threads=2)
    return found


def images_in(root: Path, skip_bad: bool = False) -> int:
    return sum(len(files) for files in scan(root, skip_bad).files.values())


def refused(root: Path, tmp_path: Path, *fragments: str, skip_bad: bool = False) -> None:
    """A build on `root` stops before any training with one line holding `fragments`."""
    config = write_config(tmp_path / "tiny.toml", {"data.skip_bad_images": True} if skip_bad else {})
    out = tmp_path / "out"
    done = cli("build", "--target", "x86", "--config", str(config), "--data", str(root), "--out", str(out))
    assert_one_line_error(done, *fragments)
    assert not (out / "work").exists()


@bad_input("files", "a symbolic link to an image file", "followed: the image is trained on")
def test_a_link_to_an_image_is_followed(tmp_path):
    root = data(tmp_path)
    (root / "class_0" / "linked.png").symlink_to(root / "class_1" / "0.png")
    assert root / "class_0" / "linked.png" in map(Path, scan(root).files["class_0"])


@bad_input("files", "a symbolic link to a folder (a class, or inside one)", "followed")
def test_links_to_folders_are_followed(tmp_path):
    root = data(tmp_path)
    elsewhere = write_image_folder(tmp_path / "elsewhere", classes=1, per_class=3)
    (root / "class_0" / "more").symlink_to(elsewhere / "class_0")
    (root / "class_9").symlink_to(elsewhere / "class_0", target_is_directory=True)
    found = scan(root)
    assert found.classes == ["class_0", "class_1", "class_9"]
    assert [len(found.files[c]) for c in found.classes] == [4 + 3, 4, 3]


@bad_input("files", "a symbolic link loop (`ln -s .. train/cat/loop`)", "skipped, counted in the log")
def test_a_symlink_loop_is_skipped_and_counted(tmp_path):
    root = data(tmp_path)
    (root / "class_0" / "loop").symlink_to("..")
    (root / "class_1" / "self").symlink_to("self")  # a link to itself: ELOOP
    found = scan(root)
    assert found.skipped["symbolic link loops"] == 2
    assert images_in(root) == 8


@bad_input("files", "a dangling symbolic link", "skipped, counted in the log")
def test_a_dangling_link_is_skipped_and_counted(tmp_path):
    root = data(tmp_path)
    (root / "class_0" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    assert scan(root).skipped["dangling symbolic links"] == 1 and images_in(root) == 8


@bad_input("files", "an image whose file name is not valid UTF-8 (`\\xff\\xfe.jpg`)", "followed: trained on")
def test_a_file_name_that_is_not_utf8_is_trained_on(tmp_path):
    root = data(tmp_path)
    shutil.copy(root / "class_0" / "0.png", os.path.join(root, "class_0", NOT_UTF8))
    for skip_bad in (False, True):
        loaded = load_data(DataConfig(path=root, input_size=16, workers=0, skip_bad_images=skip_bad))
        assert len(loaded.train) + len(loaded.val) == 9
        assert [loaded.train[i][0].shape for i in range(len(loaded.train))]  # every image loads


@bad_input("files", "a damaged image whose file name is not valid UTF-8", 'refused: "\\xff\\xfe.png: not an image"')
def test_a_bad_file_whose_name_is_not_utf8_is_named(tmp_path):
    root = data(tmp_path)
    Path(os.path.join(root, "class_0", NOT_UTF8)).write_bytes(b"not an image")
    refused(root, tmp_path, "class_0/\\xff\\xfe.png: not an image")


@bad_input("files", "a class folder whose name is not valid UTF-8", 'refused: "not valid UTF-8: rename it"')
def test_a_class_name_that_is_not_utf8_is_refused(tmp_path):
    root = data(tmp_path)
    os.rename(root / "class_1", os.path.join(root, os.fsdecode(b"class_\xe9")))
    refused(root, tmp_path, "class_\\xe9 has a name that is not valid UTF-8: rename it")


@bad_input("files", "a class name in NFC in train/ and NFD in val/", "one class (names compared in NFC)")
def test_nfc_and_nfd_spellings_across_splits_are_one_class(tmp_path):
    train = write_image_folder(tmp_path / "data" / "train", classes=2, per_class=3)
    val = write_image_folder(tmp_path / "data" / "val", classes=2, per_class=2)
    (train / "class_0").rename(train / CAFE_NFC)
    (val / "class_0").rename(val / CAFE_NFD)
    loaded = load_data(DataConfig(path=tmp_path / "data", input_size=16, workers=0))
    assert loaded.classes == [CAFE_NFC, "class_1"] and len(loaded.val) == 4


@bad_input("files", "two class folders whose names differ only in Unicode form (NFC, NFD)", 'refused: "merge them"')
def test_nfc_and_nfd_spellings_in_one_split_are_refused(tmp_path):
    root = data(tmp_path)
    (root / "class_0").rename(root / CAFE_NFC)
    (root / "class_1").rename(root / CAFE_NFD)
    refused(root, tmp_path, "are one name in two Unicode forms", "merge them")


@bad_input("files", "class folders that differ only in case (`Cat`, `cat`)", 'refused: "differ only in case"')
def test_case_only_duplicate_classes_are_refused(tmp_path):
    root = data(tmp_path, classes=3)
    (root / "class_0").rename(root / "Cat")
    (root / "class_1").rename(root / "cat")
    refused(root, tmp_path, "'Cat' and 'cat'", "differ only in case")


@bad_input(
    "files",
    "class folders in `train/` but not `val/`, or the reverse, or differing only in case (`train/cat`, `val/Cat`)",
    'refused, listing them: "only in val/: \'zebra\'", "differing only in case: train/cat and val/Cat"',
)
def test_class_folders_that_differ_between_splits_are_listed(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "val"):
        write_image_folder(root / split, classes=3, per_class=2)
    (root / "train" / "class_0").rename(root / "train" / "cat")
    (root / "val" / "class_0").rename(root / "val" / "Cat")
    shutil.copytree(root / "val" / "class_1", root / "val" / "zebra")
    shutil.rmtree(root / "train" / "class_2")  # only in val/ now, beside zebra
    refused(
        root, tmp_path, "have different class folders", "only in val/: 'class_2', 'zebra'",
        "differing only in case: train/cat and val/Cat", "give both splits the same class folders",
    )  # fmt: skip
    many = split_mismatch(["a"], ["a", *"bcdefgh"])  # the first five, and how many
    assert many == "only in val/: 'b', 'c', 'd', 'e', 'f', ... (7 in all)"


@contextmanager
def as_nobody(monkeypatch):
    """Permission bits bind root too: as root, the test takes nobody's effective ids."""
    cache = tempfile.mkdtemp()
    os.chmod(cache, 0o777)
    monkeypatch.setenv("EDGEKD_CACHE", cache)
    root = os.geteuid() == 0
    if root:
        os.setegid(65534)
        os.seteuid(65534)
    try:
        yield
    finally:
        if root:
            os.seteuid(0)
            os.setegid(0)
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture
def open_tmp():
    """A folder that nobody may enter (pytest's own are root's alone)."""
    folder = Path(tempfile.mkdtemp())
    os.chmod(folder, 0o755)
    yield folder
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder)


@bad_input("files", "an image file without read permission", 'refused: "is not readable (permission denied)"')
def test_an_unreadable_file_is_named_or_skipped(open_tmp, monkeypatch):
    root = data(open_tmp)
    (root / "class_0" / "1.png").chmod(0)
    with as_nobody(monkeypatch):
        with pytest.raises(Exception, match=r"class_0/1.png: is not readable \(permission denied\)"):
            scan(root)
        assert images_in(root, skip_bad=True) == 7


@bad_input("files", "a folder without read permission", 'refused: "is not readable", or skipped with skip_bad_images')
def test_an_unreadable_folder_is_named_or_skipped(open_tmp, monkeypatch):
    root = data(open_tmp)
    (root / "class_0" / "sub").mkdir()
    (root / "class_0" / "sub").chmod(0)
    with as_nobody(monkeypatch):
        with pytest.raises(Exception, match=r"class_0/sub is not readable \(permission denied\)"):
            scan(root)
        assert scan(root, skip_bad=True).skipped["unreadable folders"] == 1


@bad_input("files", "a FIFO or a socket in a class folder", "skipped, counted (a reader would block)")
def test_special_files_are_skipped_and_counted(tmp_path, monkeypatch):
    root = data(tmp_path)
    os.mkfifo(root / "class_0" / "pipe.png")
    monkeypatch.chdir(root / "class_1")  # a socket's path must be short: bind it by a relative name
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock.png")
        assert scan(root).skipped["special files (FIFOs, sockets, devices)"] == 2
    assert images_in(root) == 8


def deep_folder(top: Path, length: int) -> str:
    """Folders nested below `top` until the path is `length` bytes long; returns that path."""
    path, fd = str(top), os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    while len(path) < length:
        name = "d" * min(200, max(1, length - len(path) - 1))
        os.mkdir(name, dir_fd=fd)
        fd, old = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(old)
        path = f"{path}/{name}"
    os.close(fd)
    return path


@bad_input("files", "a very long path (3,000 bytes)", "followed")
def test_a_long_path_is_followed(tmp_path):
    root = data(tmp_path)
    deep = deep_folder(root / "class_0", 3000)
    shutil.copy(root / "class_0" / "0.png", f"{deep}/deep.png")
    assert f"{deep}/deep.png" in scan(root).files["class_0"]


@bad_input(
    "files",
    "a path longer than the system allows (over 4,096 bytes)",
    'refused: "a path longer than this system allows"',
)
def test_a_path_beyond_the_system_limit_is_named(tmp_path):
    root = data(tmp_path)
    deep_folder(root / "class_0", 4200)
    refused(root, tmp_path, "is a path longer than this system allows", "shorter path")
    assert scan(root, skip_bad=True).skipped["paths too long"] == 1


@bad_input(
    "files",
    "hidden folders and files (`.ipynb_checkpoints`, `.git`, `__MACOSX`, `.DS_Store`)",
    "skipped, counted; never a class",
)
def test_hidden_folders_are_not_classes(tmp_path):
    root = data(tmp_path)
    for hidden in (".ipynb_checkpoints", "__MACOSX", "class_0/.git"):
        write_image_folder(root / hidden, classes=1, per_class=1)
    (root / "class_1" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    found = scan(root)
    assert found.classes == ["class_0", "class_1"] and images_in(root) == 8
    assert found.skipped["hidden files and folders"] == 4


@bad_input("layout", "files beside the class folders (`README.txt`, `labels.csv`)", "ignored, counted")
def test_files_beside_the_class_folders_are_ignored(tmp_path):
    root = data(tmp_path)
    (root / "README.txt").write_text("cats and dogs")
    assert scan(root).skipped["files outside class folders"] == 1 and images_in(root) == 8


@bad_input("layout", "--data naming a file", 'refused: "is a file, not a folder"')
def test_data_naming_a_file_says_so(tmp_path):
    (tmp_path / "images.zip").write_bytes(b"PK")
    refused(tmp_path / "images.zip", tmp_path, "is a file, not a folder")


@bad_input("layout", "split folders `val/` and `test/` without `train/`", 'refused: "has val/ and test/ but no train/"')
def test_split_folders_without_train_are_refused(tmp_path):
    for split in ("val", "test"):
        write_image_folder(tmp_path / "data" / split, classes=2, per_class=2)
    refused(tmp_path / "data", tmp_path, "has val/ and test/ but no train/", "add train/")


@bad_input("layout", "`train/` without `val/` or `test/`", "train/ split by data.val_fraction")
def test_train_alone_is_split(tmp_path):
    write_image_folder(tmp_path / "data" / "train", classes=2, per_class=5)
    loaded = load_data(DataConfig(path=tmp_path / "data", input_size=16, workers=0, val_fraction=0.2))
    assert loaded.classes == ["class_0", "class_1"] and (len(loaded.train), len(loaded.val)) == (8, 2)


def oddities(root: Path) -> None:
    """Every oddity that is followed or skipped, in one folder."""
    (root / "class_0" / "loop").symlink_to("..")
    (root / "class_0" / "gone.png").symlink_to(root / "nowhere.png")
    shutil.copy(root / "class_0" / "0.png", os.path.join(root, "class_1", NOT_UTF8))
    os.mkfifo(root / "class_1" / "pipe.png")
    write_image_folder(root / ".ipynb_checkpoints", classes=1, per_class=1)
    (root / "class_2").rename(root / CAFE_NFD)


@bad_input("files", "data on a read-only mount", "read, never written")
def test_a_build_over_every_oddity_on_a_read_only_mount(tmp_path):
    """A real `python -m edgekd build`, the data bind-mounted read-only (user and mount namespaces)."""
    root = data(tmp_path, classes=3, per_class=8)
    oddities(root)
    mount = tmp_path / "mnt"
    mount.mkdir()
    probe = subprocess.run(
        ["unshare", "-rm", "mount", "--bind", "-o", "ro", str(root), str(mount)], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.decode().strip()}")
    config = write_config(tmp_path / "tiny.toml", {"export.formats": ["onnx"]})
    build = [sys.executable, "-m", "edgekd", "build", "--target", "x86", "--config", str(config)]
    build += ["--data", str(mount), "--out", str(tmp_path / "out")]
    script = 'mount --bind -o ro "$0" "$1" && touch "$1/x" 2>/dev/null && exit 9; shift; exec "$@"'
    command = ["unshare", "-rm", "sh", "-c", script, str(root), str(mount), *build]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"COLUMNS": "400"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "1 dangling symbolic links" in done.stderr and "1 symbolic link loops" in done.stderr
    assert "1 special files (FIFOs, sockets, devices)" in done.stderr and "1 hidden files and folders" in done.stderr
    assert "3 classes" in done.stderr
