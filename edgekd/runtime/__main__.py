"""`python -m edgekd.runtime ARTIFACT --runtime NAME ...`: measure one artifact, print JSON."""

import argparse
import json

from edgekd.runtime.measure import measure


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m edgekd.runtime")
    parser.add_argument("artifact")
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=JSON", help="a session option")
    args = parser.parse_args()
    options = {key: json.loads(value) for key, _, value in (o.partition("=") for o in args.option)}
    result = measure(args.runtime, args.artifact, args.threads, args.warmup, args.runs, batch=args.batch, **options)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
