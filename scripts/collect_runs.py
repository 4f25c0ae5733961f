"""Copy finished runs into a results folder for committing: result.json, config.yaml, train.log
(never weights). Runs already there are left alone; unfinished runs (no result.json) are skipped.

    python scripts/collect_runs.py outputs/plr results/paper_lowres [--where train.precision=auto]

--where KEY=VALUE (repeatable) keeps only runs whose config.yaml has that value, e.g. to leave out
the fp32 comparison runs of results/k100-v2. Prints how many runs it copied and skipped.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

FILES = ("result.json", "config.yaml", "train.log")


def lookup(config: dict, key: str):
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def matches(run: Path, where: list[tuple[str, str]]) -> bool:
    if not where:
        return True
    config = yaml.safe_load((run / "config.yaml").read_text())
    return all(str(lookup(config, key)) == value for key, value in where)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="an outputs folder (its runs/) or a results folder")
    parser.add_argument("dest", type=Path, help="results folder; runs go to DEST/runs/<run>/")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    where = [tuple(item.split("=", 1)) for item in args.where]
    if any(len(pair) != 2 for pair in where):
        raise SystemExit("--where takes KEY=VALUE, e.g. --where train.precision=auto")
    runs_dir = args.source / "runs"
    if not runs_dir.is_dir():
        raise SystemExit(f"{runs_dir} does not exist: give the folder that holds runs/")
    copied = present = skipped = 0
    for run in sorted(runs_dir.iterdir()):
        if not (run / "result.json").is_file() or not matches(run, where):
            skipped += 1
            continue
        target = args.dest / "runs" / run.name
        if (target / "result.json").is_file():
            present += 1
            continue
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in FILES:
            if (run / name).is_file():
                shutil.copy2(run / name, tmp / name)
        tmp.rename(target)
        copied += 1
    print(f"{args.dest}: copied {copied}, already there {present}, skipped {skipped} (unfinished or filtered)")


if __name__ == "__main__":
    main()
