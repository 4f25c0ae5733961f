"""logger=csv: two CSV files in <run>/<dir>/ (default logs/), readable with any spreadsheet or pandas.

    steps.csv   step, train/loss, train/lr, gate/<submodule>/layer<L> ...   one row per train step
    evals.csv   step, dev/<metric> ...                                   one row per dev evaluation

Each file's columns are fixed by its first row (every step logs the same keys).
"""

from __future__ import annotations

import csv


class CsvLogger:
    def __init__(self, dir: str = "logs"):
        self.dir = dir
        self.files: dict[str, tuple] = {}

    def start(self, ctx) -> None:
        from unipelt_cli.runs import inside

        self.folder = inside(ctx.run_dir, self.dir, "logger.csv.dir")  # stays inside the run folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def _write(self, name: str, step: int, values: dict) -> None:
        if name not in self.files:
            fh = open(self.folder / name, "w", newline="", encoding="utf-8")
            writer = csv.writer(fh)
            columns = list(values)
            writer.writerow(["step", *columns])
            self.files[name] = (fh, writer, columns)
        fh, writer, columns = self.files[name]
        writer.writerow([step, *(values.get(c, "") for c in columns)])  # floats as repr: they read back exactly

    def log_step(self, step: int, values: dict) -> None:
        self._write("steps.csv", step, values)

    def log_eval(self, step: int, values: dict) -> None:
        self._write("evals.csv", step, values)
        for fh, _, _ in self.files.values():
            fh.flush()

    def finish(self, result: dict, files: list) -> None:
        pass  # the run folder already holds result.json beside logs/

    def close(self, failed: bool) -> None:
        for fh, _, _ in self.files.values():
            fh.close()
        self.files = {}
