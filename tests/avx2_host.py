"""Run by tests/test_emulation.py under `qemu-x86_64 -cpu Haswell`: an x86-64 host with AVX2
and no VNNI, on any x86-64 machine. Verifies the given int8 artifacts for the `arm` target
and prints each verification as JSON.

python tests/avx2_host.py FOLDER  (FOLDER: the artifacts, images.npy, labels.npy, reference.npy)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from edgekd.config import DataConfig
from edgekd.data.loading import Data
from edgekd.formats import Artifact
from edgekd.stages.verify import VerifyConfig, verify
from edgekd.targets import load_target
from edgekd.targets.kinds import place


def main(folder: Path) -> None:
    artifacts = [Artifact(**a) for a in json.loads((folder / "artifacts.json").read_text())]
    images = torch.from_numpy(np.load(folder / "images.npy"))
    labels = torch.from_numpy(np.load(folder / "labels.npy"))
    val = TensorDataset(images, labels)
    data = Data(train=val, val=val, classes=["cat", "dog", "emu"], config=DataConfig())
    references = {"nncf": torch.from_numpy(np.load(folder / "reference.npy"))}
    checks = verify(VerifyConfig(), artifacts, references, data, place(load_target("arm")))
    print(json.dumps([c.model_dump() for c in checks]))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
