"""What a run tells the person watching it, and what it writes to its train.log.

On a terminal: a rich progress bar with the loss, the last dev metric and the ETA. Elsewhere (a
pipe, a log file, a cluster job): one plain line per evaluation. `--quiet`: only the summary line.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


class Reporter:
    def __init__(self, log_path: Path, quiet: bool = False, metric: str = "accuracy"):
        self.log = open(log_path, "a", encoding="utf-8")
        self.quiet = quiet
        self.metric = metric
        self.live = not quiet and sys.stderr.isatty()
        self.progress = None
        self.task = None
        self.last_dev = "-"

    def _line(self, text: str, show: bool = True) -> None:
        self.log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        self.log.flush()
        if show and not self.quiet:
            if self.progress is not None:
                self.progress.console.print(text, highlight=False)
            else:
                print(text, file=sys.stderr, flush=True)

    def start(self, run_dir: Path, params: str, info: dict, args) -> None:
        self._line(f"run {run_dir}")
        self._line(params)
        self._line(
            f"train {info['train_size']}, dev {info['dev_size']}, test {info['test_sizes']}; "
            f"{'bf16' if args.bf16 else 'fp32'} on {args.device}"
        )
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  dev {task.fields[dev]}"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=None, loss="-", dev="-")

    def note(self, text: str) -> None:
        self._line(text)

    def step(self, step: int, total: int, loss: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, total=total, loss=f"{loss:.4f}", dev=self.last_dev)

    def evaluation(self, record: dict) -> None:
        value = record["dev"][self.metric]
        self.last_dev = f"{self.metric} {value:.2f}"
        self._line(
            f"step {record['step']} epoch {record['epoch']:.2f} loss {record['loss']:.4f} dev {self.last_dev}",
            show=not self.live,
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        try:
            self.log.close()
        except OSError:
            pass  # each line was flushed as written; a full disk here must not hide the run's own error

    def summary(self, text: str) -> None:
        try:
            self._line(text, show=False)
        except OSError:
            pass  # the run is saved and done; the CLI prints the line anyway
