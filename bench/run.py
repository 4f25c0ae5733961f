"""`make bench`: every benchmark figure, measured side by side in one process (the end-to-end runs
in fresh child processes), printed and written to outputs/bench/figures.md.

    python bench/run.py                 # all sections (about 10 minutes on 2 cores)
    python bench/run.py --update-docs   # also replace the figures block of docs/PERFORMANCE.md
    python bench/run.py steps eval      # only some sections: steps, ablation, eval, lora, trackers, e2e, mpnet,
                                        # packing, plan, cfg, startup (bench/startup.py: fresh processes, CPU s)
    python bench/run.py compile         # torch.compile's cost and gain (only when named: minutes of compiling)
    python bench/run.py slice           # one grid slice as real sweeps beside its projection (only when named: ~30 min)
    BENCH_ROUNDS=9 python bench/run.py  # more rounds of interleaved passes (default 5)

Needs the real GLUE folder (UNIPELT_GLUE_DIR, or ../shared/data/glue beside the checkout).
Figures are medians (min-max); compare ratios measured in the same run, not across runs.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import e2e, evaluation, levers, mpnet, startup, steps, trackers  # noqa: E402
from bench import slice as slice_  # noqa: E402
from bench.common import BATCHES, OUT, PRESETS, fmt_spread, matmul_peak  # noqa: E402

# the grid's committed runs: their lengths for the projection of section 3
PAPER_RUNS = Path(__file__).resolve().parents[1] / "results" / "paper_lowres"

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
DOCS = Path(__file__).resolve().parents[1] / "docs" / "PERFORMANCE.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    flags = open("/proc/cpuinfo").read()
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return (f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
            f"bf16 instructions: {', '.join(bf16) or 'none'}; python {platform.python_version()}")  # fmt: skip


def section_steps(lines: list[str], peaks: dict) -> dict[str, float]:
    rows = steps.method_steps(PRESETS, ROUNDS)
    base = next(r for r in rows if r["method"] == "finetune" and r["precision"] == "fp32")["step"]["median"]
    same = {p: next(r for r in rows if r["method"] == "finetune" and r["precision"] == p)["step"]["median"]
            for p in ("fp32", "bf16")}  # fmt: skip
    lines += [f"## 1. Train step on identical SST-2 K=100 batches (batch 16, length-grouped as in training: "
              f"{rows[0]['tokens']:.0f} real of {rows[0]['padded']:.0f} padded tokens a batch)", "",
              "| method | precision | ms per step, median (min-max) | vs finetune fp32 | vs finetune same precision |"
              " GFLOP per step | achieved GFLOP/s | % of matmul peak |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    ratio_to_apl = {}
    MINILM_STEPS.update({(r["method"], r["precision"]): r["step"]["median"] for r in rows})
    apl = {p: next(r for r in rows if r["method"] == "unipelt_apl" and r["precision"] == p)["step"]["median"]
           for p in ("fp32", "bf16")}  # fmt: skip
    for r in rows:
        med = r["step"]["median"]
        achieved = r["flops"] / med
        lines.append(
            f"| {r['method']} | {r['precision']} | {fmt_spread(r['step'], 1000)} | {med / base:.2f}x |"
            f" {med / same[r['precision']]:.2f}x | {r['flops'] / 1e9:.2f} | {achieved / 1e9:.0f} |"
            f" {100 * achieved / peaks[r['precision']]:.0f}% |"
        )
        if r["precision"] == "bf16":
            ratio_to_apl[r["method"]] = med / apl["bf16"]
    lines.append("")
    return ratio_to_apl


MINILM_STEPS: dict[tuple[str, str], float] = {}  # (method, precision) -> median seconds, from section 1


def section_mpnet(lines: list[str]) -> None:
    """all-mpnet-base-v2 (110M) beside MiniLM (22M): steps, eval, one end-to-end run (bench/mpnet.py)."""
    lines += ["## 10. BERT-base-sized backbone: all-mpnet-base-v2 (`backbone=mpnet-base`, eager attention)", ""]
    reason = mpnet.missing_reason()
    if reason:
        print(f"bench: MPNet figures skipped: {reason}", flush=True)
        lines += [f"Skipped: {reason}.", ""]
        return
    rows = mpnet.method_steps(PRESETS, ROUNDS)
    base = next(r for r in rows if r["method"] == "finetune")["step"]["median"]
    lines += ["Train step on identical SST-2 K=100 batches (batch 16), default precision; MiniLM's step from"
              " section 1 (blank when section 1 did not run).", "",
              "| method | precision | ms per step, median (min-max) | vs finetune | MiniLM ms | MPNet / MiniLM |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        med, small = r["step"]["median"], MINILM_STEPS.get((r["method"], r["precision"]))
        beside = f"{small * 1000:.1f} | {med / small:.2f}x" if small else " | "
        lines.append(f"| {r['method']} | {r['precision']} | {fmt_spread(r['step'], 1000)} | {med / base:.2f}x |"
                     f" {beside} |")  # fmt: skip
    precision = rows[0]["precision"]
    evals = evaluation.throughput("sst2", ["finetune", "unipelt_apl"], repeat=2, extra=[mpnet.BACKBONE],
                                  precisions=(precision,))  # fmt: skip
    lines += ["", "| eval: task | method | precision | examples | examples/s, median (min-max) |",
              "|---|---|---|---|---|"]  # fmt: skip
    for r in evals:
        lines.append(f"| {r['task']} | {r['method']} | {r['precision']} | {r['examples']} |"
                     f" {fmt_spread(r['per_second'])} |")  # fmt: skip
    r = e2e.train_wall(["task=sst2", "budget=k100", "method=unipelt_apl", mpnet.BACKBONE])
    lines += ["", "| end to end: command | precision | wall s | train s | eval s | test metric |",
              "|---|---|---|---|---|---|",
              f"| `{r['command']}` | {r['precision']} | {r['wall']:.1f} | {r['train']:.1f} | {r['eval']:.1f} |"
              f" {r['metric']:.4f} |", ""]  # fmt: skip


def section_ablation(lines: list[str]) -> None:
    rows = steps.ablation("unipelt_apl", ROUNDS)
    base = rows[0]["step"]["median"]
    lines += [
        "### 1b. What moves the UniPELT APL step (one speed path off at a time)",
        "",
        "| setting | padded tokens a batch | ms per step, median (min-max) | vs defaults |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['padded']:.0f} | {fmt_spread(r['step'], 1000)} |"
                     f" {r['step']['median'] / base:.2f}x |")  # fmt: skip
    lines.append("")


def section_eval(lines: list[str]) -> None:
    lines += ["## 2. Evaluation throughput (GLUE dev, length-sorted batches of 32, inference mode)", "",
              "| task | method | precision | examples | tokens | examples/s, median (min-max) |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    rows = evaluation.throughput("sst2", ["finetune", "unipelt_apl"], repeat=3)
    rows += evaluation.throughput("mnli", ["finetune", "unipelt_apl"], repeat=1)
    for r in rows:
        lines.append(f"| {r['task']} | {r['method']} | {r['precision']} | {r['examples']} | {r['tokens']} |"
                     f" {fmt_spread(r['per_second'])} |")  # fmt: skip
    lines.append("")


def section_e2e(lines: list[str], ratio_to_apl: dict[str, float]) -> None:
    lines += [
        "## 3. End to end: `unipelt train` in a fresh process (train, dev selection each epoch, test)",
        "",
        "| command | precision | wall s | train s | eval s | test metric |",
        "|---|---|---|---|---|---|",
    ]
    for overrides in (["task=sst2", "budget=k100", "method=unipelt_apl"],
                      ["task=sst2", "budget=k100", "method=unipelt_apl", "train.precision=fp32"],
                      ["task=sst2", "budget=k100", "method=finetune", "train.precision=fp32"]):  # fmt: skip
        r = e2e.train_wall(overrides)
        lines.append(f"| `{r['command']}` | {r['precision']} | {r['wall']:.1f} | {r['train']:.1f} | {r['eval']:.1f} |"
                     f" {r['metric']:.4f} |")  # fmt: skip
    p = e2e.project("paper_lowres", ratio_to_apl, e2e.committed_lengths(PAPER_RUNS))
    lines += ["", f"Projection of `unipelt sweep +sweep=paper_lowres` ({p['runs']} runs, one after another, "
              "no early stopping, default precision) from per-task costs measured now:", "",
              "| task | APL step ms | dev ms/example | test ms/example | test rows | start s | projected hours |"
              " with committed lengths |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for task, c in p["costs"].items():
        lines.append(f"| {task} | {c['step'] * 1000:.0f} | {c['dev_s'] * 1000:.2f} | {c['test_s'] * 1000:.2f} |"
                     f" {c['test_size']} | {c['start']:.1f} | {p['per_task'][task] / 3600:.1f} |"
                     f" {p['per_task_own'][task] / 3600:.1f} |")  # fmt: skip
    lines += [
        "",
        f"**Whole grid: {p['total'] / 3600:.1f} hours** (upper bound: early stopping only shortens runs);"
        f" **{p['total_own'] / 3600:.1f} hours** with early stopping as it happened ({p['committed']} runs"
        f" at their committed length in results/paper_lowres, the other {p['runs'] - p['committed']} at their"
        " method and budget's mean fraction of the upper bound), one run after another.",
        "",
    ]


def section_lora(lines: list[str]) -> None:
    rows = steps.lora_vs_peft(ROUNDS)
    get = {(r["impl"], r["precision"]): r for r in rows}
    peft_default = get[("peft lora", "fp32")]["step"]["median"]
    lines += ["## 5. Our LoRA preset vs PEFT LoRA (same backbone, batches, r=8, alpha 16, query+value)", "",
              "| implementation | precision | trainable | ms per step, median (min-max) | vs PEFT fp32 (its default) |"
              " vs PEFT same precision |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        med = r["step"]["median"]
        same = get[("peft lora", r["precision"])]["step"]["median"]
        lines.append(f"| {r['impl']} | {r['precision']} | {r['trainable']:,} | {fmt_spread(r['step'], 1000)} |"
                     f" {med / peft_default:.2f}x | {med / same:.2f}x |")  # fmt: skip
    lines.append("")


def section_trackers(lines: list[str]) -> None:
    r = trackers.overhead(ROUNDS)
    lines += [f"## 6. Tracker overhead: UniPELT APL train step with and without logger=[{','.join(r['trackers'])}]"
              " (target: under 2%)", "",
              "| loggers | ms per step, median (min-max) |", "|---|---|",
              f"| none | {fmt_spread(r['without'], 1000)} |",
              f"| {', '.join(r['trackers'])} | {fmt_spread(r['with'], 1000)} |", "",
              f"Time inside the trackers' calls (closing included): {r['inside'] * 1000:.2f} ms a step,"
              f" {100 * r['inside'] / r['without']['median']:.1f}% of the median step; difference of the medians:"
              f" {100 * r['overhead']:+.1f}% (noisier: other processes share the CPUs).", ""]  # fmt: skip


def section_packing(lines: list[str]) -> None:
    """The upper bound of packing R runs into one process: per-example step time at batch 16 R."""
    lines += ["## 8. Packing runs, its upper bound: UniPELT APL train step (SST-2 K=1000, bf16) per example at"
              " batch 16 R (each batch R times over) against batch 16", "",
              "| runs packed R | batch | ms per example, median (min-max) | vs one run |",
              "|---|---|---|---|"]  # fmt: skip
    for r in levers.packing(ROUNDS):
        per_example = fmt_spread(r["ms_per_example"], 1000, 2)
        lines.append(f"| {r['runs']} | {r['batch']} | {per_example} | {r['vs_one']:.2f}x |")
    lines.append("")


def section_compile(lines: list[str]) -> None:
    """torch.compile of the whole APL model: compile seconds and the step after (only when asked)."""
    r = levers.compiled(ROUNDS)
    lines += ["## 9. torch.compile (inductor, dynamic shapes) of the UniPELT APL model, SST-2 K=100 batches, bf16", "",
              "| first pass over 6 batches (compiles), s | eager ms per step | compiled ms per step"
              " | compiled vs eager |",
              "|---|---|---|---|",
              f"| {r['first_pass_s']:.0f} | {fmt_spread(r['eager'], 1000)} | {fmt_spread(r['compiled'], 1000)} |"
              f" {r['ratio']:.2f}x |", ""]  # fmt: skip


def section_start(lines: list[str]) -> None:
    """Planning, config printing and start-up, each in fresh processes (bench/startup.py)."""
    rounds = max(3, ROUNDS // 2)
    lines += [f"## 7. Before the work: planning, `--cfg`, start-up (fresh processes, CPU = user + sys,"
              f" median (min-max) of {rounds})", "",
              "| command | case | CPU s | wall s |", "|---|---|---|---|"]  # fmt: skip
    if "plan" in SECTIONS:
        for case, r in startup.plan(rounds).items():
            lines.append(f"| `unipelt sweep +sweep=paper_lowres --dry-run` | {case} | {fmt_spread(r, digits=2)} |"
                         f" {fmt_spread(r['wall'], digits=2)} |")  # fmt: skip
    if "cfg" in SECTIONS:
        r = startup.cfg(rounds)
        lines.append(f"| `unipelt train task=sst2 --cfg` | | {fmt_spread(r, digits=2)} |"
                     f" {fmt_spread(r['wall'], digits=2)} |")  # fmt: skip
    if "startup" in SECTIONS:
        r = startup.startup(rounds)
        lines += ["", "| `unipelt train task=sst2` (SST-2 K=100 APL, fresh outputs folder) | median (min-max) |",
                  "|---|---|",
                  f"| process start to the end of the first train step, s | {fmt_spread(r['first_step'])} |",
                  f"| CPU s to the first step | {fmt_spread(r['cpu'])} |",
                  f"| peak RSS of the whole run, MiB (one run) | {r['rss_mib']:.0f} |",
                  f"| its result | {r['last'].split(': ', 1)[-1].split(';')[0]} |"]  # fmt: skip
    lines.append("")


def section_slice(lines: list[str]) -> None:
    """One slice of the paper grid as real sweeps, beside its projection (only when asked: ~30 min)."""
    r = slice_.measure(ROUNDS)
    rows, walls = r["rows"], r["walls"]
    command = f"unipelt sweep {' '.join(slice_.SLICE)} method={','.join(slice_.METHODS)}"
    lines += [f"## 11. One slice of the paper grid timed end to end: `{command}`, fresh outputs, beside its projection",
              "",
              f"| method | step vs APL | steps run (of {r['steps_max']}) | dev evaluations (of {r['evals_max']}) |"
              " projected s, every epoch | projected s, its own length | its train + eval s (-j 1) |"
              " test metric, -j 1 / -j 2 |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for w in rows:
        metric = " / ".join(f"{m:.2f}" for m in w["metric"].values())
        lines.append(f"| {w['method']} | {w['ratio']:.2f}x | {w['steps']} | {w['evals']} | {w['upper']:.0f} |"
                     f" {w['own_length']:.0f} | {w['run_s']:.0f} | {metric} |")  # fmt: skip
    upper, own = sum(w["upper"] for w in rows), sum(w["own_length"] for w in rows)
    lines += ["", f"| the {len(rows)} runs | projected, every epoch | projected, their own lengths"
              " | measured wall, -j 1 | measured wall, -j 2 (1 thread each) |", "|---|---|---|---|---|",
              f"| seconds | {upper:.0f} | {own:.0f} | {walls[1]:.0f} | {walls[2]:.0f} |", "",
              f"Measured -j 1 against the projection with the runs' own lengths: {walls[1] / own:.2f}x;"
              f" -j 2 against -j 1: {walls[2] / walls[1]:.2f}x.", ""]  # fmt: skip


SECTIONS: set[str] = set()  # the sections asked for on the command line (empty: all)
STARTUP = ("plan", "cfg", "startup")  # sections that run fresh processes only
ONLY_WHEN_ASKED = ("compile", "slice")  # minutes of compiling; a half-hour grid slice


def main() -> None:
    t0 = time.perf_counter()
    only = set(sys.argv[1:]) - {"--update-docs"}
    SECTIONS.update(only or STARTUP)
    lines = [f"Machine: {machine()}.", f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
             f" with `make bench` ({ROUNDS} rounds of one pass over {BATCHES} batches per configuration).",
             ""]  # fmt: skip
    if not only or "steps" in only:  # section 1's share of the peak is computed from this one
        peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
        lines += ["## 4. Matrix-multiply peak in this process (best of 512/1024/2048 cubed, median of 9):"
                  f" fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s.",
                  "Achieved train-step FLOP/s are in section 1.", ""]  # fmt: skip
    ratio_to_apl: dict[str, float] = {}
    for name, fn in (("steps", lambda: ratio_to_apl.update(section_steps(lines, peaks))),
                     ("ablation", lambda: section_ablation(lines)),
                     ("eval", lambda: section_eval(lines)),
                     ("lora", lambda: section_lora(lines)),
                     ("trackers", lambda: section_trackers(lines)),
                     ("e2e", lambda: section_e2e(lines, ratio_to_apl)),
                     ("mpnet", lambda: section_mpnet(lines)),
                     ("packing", lambda: section_packing(lines)),
                     ("compile", lambda: section_compile(lines)),
                     ("slice", lambda: section_slice(lines)),
                     ("start", lambda: section_start(lines))):  # fmt: skip
        if name in ONLY_WHEN_ASKED and name not in only:
            continue
        if not only or name in only or (name == "start" and only & set(STARTUP)):
            fn()
            print("\n".join(lines), flush=True) if name == "steps" else None
    lines.append(f"(benchmark wall time {time.perf_counter() - t0:.0f} s)")
    text = "\n".join(lines)
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "figures.md").write_text(text + "\n")
    if "--update-docs" in sys.argv:
        doc = DOCS.read_text()
        head, _, rest = doc.partition(START)
        old, _, tail = rest.partition(END)
        if only:  # some sections: replace those in the block, keep the others and their date
            text = merge_sections(old.strip("\n"), text, f"python bench/run.py {' '.join(sorted(only))}")
        DOCS.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def _sections(block: str) -> tuple[list[str], dict[str, list[str]]]:
    """(lines before the first section, {"## N.": that section's lines}) of a figures block."""
    head: list[str] = []
    sections: dict[str, list[str]] = {}
    current = head
    for line in block.splitlines():
        if line.startswith("## ") and line.split()[1].rstrip(".").isdigit():
            current = sections.setdefault(line.split()[1], [])
        current.append(line)
    return head, sections


def _superseded(line: str, measured: dict) -> bool:
    """An older "Section(s) N re-measured ..." line whose sections are all measured again now."""
    found = re.match(r"Sections? ([\d, ]+) re-measured ", line)
    return bool(found) and all(f"{n.strip()}." in measured for n in found.group(1).split(","))


def merge_sections(old: str, new: str, command: str) -> str:
    """The old figures block with the sections that `new` measured put in their place (or added
    at the end), and a line saying which sections were re-measured when, with which command."""
    old_head, old_sections = _sections(old)
    new_head, new_sections = _sections(new)
    when = next((ln for ln in new_head if ln.startswith("Measured ")), "Measured now").split(" with ")[0]
    names = ", ".join(k.rstrip(".") for k in new_sections)
    plural = "s" if len(new_sections) > 1 else ""
    note = f"Section{plural} {names} re-measured {when.removeprefix('Measured ')} with `{command} --update-docs`."
    head = [ln for ln in old_head if ln.strip() and not _superseded(ln, new_sections)] + [note, ""]
    merged = {**old_sections, **new_sections}
    return "\n".join(head + [ln for lines in merged.values() for ln in lines])


if __name__ == "__main__":
    main()
