"""`python -m edgekd.runtime.logits JOBS.json IMAGES.npy`: each job's artifact run on the images
in this machine's (or emulator's) runtime, its logits saved to the job's output file. JOBS is a
list of [runtime, artifact, output.npy, threads]; one line per finished job goes to stdout."""

from __future__ import annotations

import json
import sys

import numpy as np

from edgekd.runtime import open_session


def main() -> None:
    jobs, images = json.loads(open(sys.argv[1]).read()), np.load(sys.argv[2])
    for runtime, artifact, output, threads in jobs:
        session = open_session(runtime, artifact, threads)
        np.save(output, np.concatenate([session.run(images[i : i + 64]) for i in range(0, len(images), 64)]))
        print(f"done {artifact}", flush=True)


if __name__ == "__main__":
    main()
