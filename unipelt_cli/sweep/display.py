"""What a sweep shows while it runs.

On a terminal: a live panel (rich) with a bar over the whole sweep, the counts (done, skipped,
failed, running, waiting, pending), the elapsed time and the ETA, the runs in flight, and one line
per finished run above it. Elsewhere (a pipe, a log file, a cluster job): one plain line per
finished run, with the same counts. `--quiet`: nothing until the summary.
"""

from __future__ import annotations

import sys
import time

from unipelt_cli.sweep.lock import format_seconds

MAX_RUNNING_SHOWN = 8


class Display:
    def __init__(self, sweep, quiet: bool = False, stream=None):
        self.sweep = sweep  # a runner.Sweep: records, counts(), eta(), started
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = None
        self.console = None

    def start(self, header: str) -> None:
        if self.quiet:
            return
        if self.stream.isatty():
            from rich.console import Console
            from rich.live import Live

            self.console = Console(file=self.stream)
            self.console.print(header, highlight=False)
            self.live = Live(console=self.console, get_renderable=self._render, refresh_per_second=2, transient=True)
            self.live.start()
        else:
            self._plain(header)

    def _plain(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def counts_line(self) -> str:
        counts = self.sweep.counts()
        parts = [f"{state} {n}" for state, n in counts.items() if n or state in ("done", "failed", "pending")]
        eta = self.sweep.eta()
        elapsed = format_seconds(time.time() - self.sweep.started)
        return f"{', '.join(parts)}; {elapsed} elapsed, ETA {format_seconds(eta) if eta is not None else '?'}"

    def finished(self, record) -> None:
        """A job reached done, failed or skipped (skips found at the start are not announced)."""
        if self.quiet:
            return
        total = len(self.sweep.records)
        ended = sum(1 for r in self.sweep.records if r.state in ("done", "skipped", "failed"))
        detail = record.summary or record.reason or ""
        took = f" in {record.seconds:.1f}s" if record.seconds else ""
        text = f"{record.state} {record.run_id}{took}{': ' + detail if detail else ''}"
        if self.live is not None:
            style = {"done": "green", "failed": "red"}.get(record.state, "dim")
            self.console.print(f"[{style}]{record.state:<7}[/] {text.split(' ', 1)[1]}", highlight=False)
        else:
            self._plain(f"[{ended}/{total}] {text} | {self.counts_line()}")

    def note(self, text: str) -> None:
        if self.quiet:
            return
        if self.live is not None:
            self.console.print(text, highlight=False)
        else:
            self._plain(text)

    def _render(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        records = self.sweep.records
        ended = sum(1 for r in records if r.state in ("done", "skipped", "failed"))
        row = Table.grid(padding=(0, 1))
        row.add_column(no_wrap=True)
        row.add_column(ratio=1)
        row.add_row(
            ProgressBar(total=max(1, len(records)), completed=ended, width=24),
            Text(f"{ended}/{len(records)}  {self.counts_line()}"),
        )
        lines = [row]
        now = time.time()
        running = [r for r in records if r.state == "running"]
        for record in running[:MAX_RUNNING_SHOWN]:
            lines.append(Text(f"  running {record.run_id} ({format_seconds(now - record.started)})", style="cyan"))
        if len(running) > MAX_RUNNING_SHOWN:
            lines.append(Text(f"  ... and {len(running) - MAX_RUNNING_SHOWN} more running"))
        waiting = [r for r in records if r.state == "waiting"]
        if waiting:
            lines.append(Text(f"  waiting for {len(waiting)} run(s) held by another process: {waiting[0].reason}"))
        return Group(*lines)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
