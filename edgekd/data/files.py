"""Which files of a data folder are the images of which class: the file-system rules
(README, "Data folders"), one pass over the folder, no file opened.

- Class folders are the folders directly inside a split; links to folders are followed.
  Class names are Unicode in NFC form (macOS writes NFD): two folders whose names differ only
  in that form, or only in case (one folder on macOS and Windows), are refused, as is a name
  that is not valid UTF-8 (class names go into the artifacts' metadata).
- Inside a class folder, every regular file at any depth is an image of that class, whatever
  its name's encoding. Links are followed; a link back into its own folder (a loop) and a
  dangling link are skipped; hidden files and folders (`.DS_Store`, `.ipynb_checkpoints`,
  `__MACOSX`) and special files (FIFOs, sockets, devices, which would block a reader) are
  skipped; each is counted in the log.
- A folder that cannot be listed (permissions, a path longer than the system allows) stops
  the run naming it, or is skipped and counted with `skip_bad_images`.
"""

from __future__ import annotations

import errno
import os
import stat
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from edgekd.errors import EdgekdError

SKIP_HINT = "or set skip_bad_images = true in [data] to leave bad files out"


def shown(path: str) -> str:
    """A path as it can be printed: bytes that are not UTF-8 as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


@dataclass
class ClassFiles:
    """A split's classes (NFC names, sorted) and each class's image paths, in a fixed order."""

    classes: list[str]
    files: dict[str, list[str]]
    skipped: Counter = field(default_factory=Counter)  # reason -> how many entries

    def skipped_text(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))


def _bad_path(path: str, error: OSError, skip_bad: bool, skipped: Counter) -> None:
    """A folder or link that cannot be read: refused naming it, or counted with `skip_bad`."""
    if error.errno == errno.ENAMETOOLONG:
        why = f"is a path longer than this system allows ({len(os.fsencode(path))} bytes)"
        fix, reason = "move the data to a shorter path or shorten the folder names", "paths too long"
    elif error.errno in (errno.EACCES, errno.EPERM):
        why, fix = "is not readable (permission denied)", "fix its permissions (chmod a+rx)"
        reason = "unreadable folders"
    else:
        why, fix, reason = f"cannot be read ({error.strerror})", "fix or remove it", "unreadable entries"
    if not skip_bad:
        raise EdgekdError(f"{shown(path)[:200]} {why}: {fix}, {SKIP_HINT}") from None
    skipped[reason] += 1


def _listing(folder: str, skip_bad: bool, skipped: Counter) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda e: e.name)
    except OSError as e:
        _bad_path(folder, e, skip_bad, skipped)
        return []


def _kind(entry: os.DirEntry, skip_bad: bool, skipped: Counter) -> tuple[str, os.stat_result] | None:
    """("dir" | "file", its stat after following links), or None for an entry that is skipped."""
    if hidden(entry.name):
        skipped["hidden files and folders"] += 1
        return None
    try:
        st = os.stat(entry.path)  # follows links
    except FileNotFoundError:
        skipped["dangling symbolic links"] += 1
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:  # links that lead to each other
            skipped["symbolic link loops"] += 1
        else:
            _bad_path(entry.path, e, skip_bad, skipped)
        return None
    if stat.S_ISDIR(st.st_mode):
        return "dir", st
    if stat.S_ISREG(st.st_mode):
        return "file", st
    skipped["special files (FIFOs, sockets, devices)"] += 1
    return None


def _walk(folder: str, ancestors: frozenset, skip_bad: bool, skipped: Counter, found: list) -> None:
    """Appends (folder, [file names]) for `folder` and every folder below it."""
    names, below = [], []
    for entry in _listing(folder, skip_bad, skipped):
        kind = _kind(entry, skip_bad, skipped)
        if kind is None:
            continue
        what, st = kind
        if what == "file":
            names.append(entry.name)
        elif (st.st_dev, st.st_ino) in ancestors:  # a link back up: following it never ends
            skipped["symbolic link loops"] += 1
        else:
            below.append((entry.path, ancestors | {(st.st_dev, st.st_ino)}))
    found.append((folder, names))
    for path, seen in below:
        _walk(path, seen, skip_bad, skipped, found)


def _folders_above(top: str) -> frozenset:
    """The class folder and every folder that holds it: a link to any of them is a loop (`..`
    from a class folder would walk the other classes into this one)."""
    ids, path = set(), os.path.realpath(top)
    while True:
        st = os.stat(path)
        ids.add((st.st_dev, st.st_ino))
        parent = os.path.dirname(path)
        if parent == path:
            return frozenset(ids)
        path = parent


def _class_name(root: str, name: str) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise EdgekdError(
            f"class folder {shown(os.path.join(root, name))} has a name that is not valid UTF-8: rename it "
            "(class names are written into the artifacts' metadata)"
        ) from None
    return unicodedata.normalize("NFC", name)


def _check_distinct(root: str, names: dict[str, str]) -> None:
    """`names`: NFC name -> name on disk. Refuses names equal up to case."""
    by_case: dict[str, str] = {}
    for nfc in sorted(names):
        other = by_case.setdefault(nfc.casefold(), nfc)
        if other != nfc:
            raise EdgekdError(
                f"class folders '{other}' and '{nfc}' in {shown(root)} differ only in case (one folder on "
                "macOS and Windows): merge them into one, or rename one"
            )


def _listed(items: list[str], limit: int = 5) -> str:
    """The first `limit` items, and how many there are in all when more."""
    return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def split_mismatch(train_classes: list[str], val_classes: list[str], val_split: str = "val") -> str:
    """How the class folders of train/ and the val split (NFC names, so Unicode forms already
    match) differ: the folders in one split only, then the pairs that differ only in case."""
    train, val = set(train_classes), set(val_classes)
    val_by_case = {name.casefold(): name for name in sorted(val - train)}
    case_only = {t: val_by_case[t.casefold()] for t in sorted(train - val) if t.casefold() in val_by_case}
    only = {"train": train - val - set(case_only), val_split: val - train - set(case_only.values())}
    parts = [f"only in {split}/: {_listed([repr(n) for n in sorted(names)])}" for split, names in only.items() if names]
    if case_only:
        pairs = [f"train/{t} and {val_split}/{v}" for t, v in case_only.items()]
        parts.append(f"differing only in case: {_listed(pairs)}")
    return "; ".join(parts)


def scan_split(root: str, skip_bad: bool) -> ClassFiles:
    """The class folders of one split (`root`) and their image files."""
    skipped: Counter = Counter()
    on_disk: dict[str, str] = {}
    for entry in _listing(root, False, skipped):
        kind = _kind(entry, skip_bad, skipped)
        if kind is None:
            continue
        if kind[0] == "file":
            skipped["files outside class folders"] += 1
            continue
        nfc = _class_name(root, entry.name)
        if nfc in on_disk:
            raise EdgekdError(
                f"class folders '{shown(on_disk[nfc])}' and '{shown(entry.name)}' in {shown(root)} are one name in "
                "two Unicode forms (NFC and NFD, as Linux and macOS write it): merge them into one folder"
            )
        on_disk[nfc] = entry.name
    _check_distinct(root, on_disk)
    files = {}
    for nfc in sorted(on_disk):
        top = os.path.join(root, on_disk[nfc])
        found: list = []
        _walk(top, _folders_above(top), skip_bad, skipped, found)
        # the order torchvision's ImageFolder reads (sorted folders, then sorted names): runs repeat
        files[nfc] = [os.path.join(folder, n) for folder, names in sorted(found) for n in names]
    return ClassFiles(sorted(on_disk), files, skipped)
