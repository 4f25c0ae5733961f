# ruff: noqa: E501  (the tables below are copied verbatim, one paper row per line)
"""What the UniPELT paper reported (Mao et al., ACL 2022, BERT-base; test = GLUE dev; mean over 5
seeds), copied as data so `unipelt report --compare-paper` can put it beside our numbers.

The rows below are the paper's tables verbatim (method | one cell per task | Avg), in the paper's
column order; std in parentheses where the paper gives it. Parsed once into plain dicts.
"""

from __future__ import annotations

import re

BACKBONE = "bert-base-uncased"
TASKS = ("sst2", "mrpc", "cola", "rte", "qnli", "stsb", "mnli", "qqp")
METHOD_NAMES = {
    "Fine-tuning": "finetune",
    "BitFit": "bitfit",
    "Adapter": "adapter",
    "Prefix-tuning": "prefix",
    "LoRA": "lora",
    "UniPELT (AP)": "unipelt_ap",
    "UniPELT (APL)": "unipelt_apl",
    "UniPELT (AP)-NoGate": "unipelt_ap_nogate",
}

_SCORES = {
    100: """
Fine-tuning | 79.61 (4.25) | 81.81 (0.35) | 16.56 (4.34) | 55.88 (1.64) | 69.25 (5.94) | 74.07 (6.51) | 42.56 (3.43) | 60.41 (6.42) | 60.02
BitFit | 62.94 (4.85) | 81.09 (0.17) | 2.71 (1.57) | 47.65 (3.56) | 42.46 (1.37) | 54.53 (0.56) | 38.16 (0.53) | 59.56 (0.39) | 48.64
Adapter | 80.48 (2.94) | 81.40 (0.19) | 2.02 (4.04) | 52.78 (0.27) | 72.25 (0.49) | 77.32 (1.54) | 38.81 (3.64) | 60.88 (4.00) | 58.24
Prefix-tuning | 60.87 (12.47) | 81.22 (0.00) | 0.00 (0.00) | 55.96 (2.00) | 71.91 (2.69) | 57.69 (0.02) | 40.58 (2.49) | 15.68 (0.12) | 47.99
LoRA | 81.56 (0.94) | 81.66 (0.81) | 13.31 (10.00) | 55.02 (1.75) | 73.52 (1.20) | 49.35 (21.87) | 39.60 (4.98) | 0.09 (0.02) | 49.26
UniPELT (AP) | 77.22 (3.75) | 81.86 (0.70) | 14.42 (10.24) | 55.52 (2.16) | 72.26 (0.89) | 79.14 (1.97) | 42.59 (1.20) | 63.41 (1.44) | 60.80
UniPELT (APL) | 82.36 (0.86) | 81.71 (0.72) | 23.62 (8.83) | 55.45 (1.28) | 73.19 (0.93) | 79.37 (1.07) | 42.30 (1.88) | 62.70 (2.55) | 62.59
""",
    500: """
Fine-tuning | 85.67 (0.97) | 83.34 (0.55) | 36.47 (2.69) | 59.64 (1.10) | 77.30 (0.49) | 84.96 (1.19) | 55.84 (0.85) | 68.23 (1.39) | 68.93
BitFit | 83.44 (0.63) | 82.16 (0.37) | 3.32 (2.59) | 61.88 (2.75) | 69.15 (9.91) | 76.30 (0.36) | 40.82 (3.30) | 65.29 (3.66) | 60.30
Adapter | 84.54 (1.37) | 82.53 (0.36) | 38.65 (3.97) | 59.35 (3.09) | 77.39 (0.84) | 83.52 (0.33) | 50.04 (1.72) | 68.12 (0.95) | 68.02
Prefix-tuning | 83.65 (0.69) | 82.96 (1.63) | 38.16 (2.25) | 63.18 (2.70) | 78.50 (1.12) | 79.75 (1.49) | 58.06 (1.04) | 54.34 (25.91) | 67.32
LoRA | 84.98 (1.10) | 82.53 (0.70) | 39.86 (2.71) | 63.03 (2.57) | 79.46 (0.66) | 65.05 (26.31) | 56.54 (2.05) | 55.46 (27.74) | 65.86
UniPELT (AP) | 84.84 (0.28) | 83.25 (0.51) | 39.84 (5.01) | 63.32 (1.72) | 78.36 (1.06) | 84.53 (0.48) | 56.08 (3.26) | 68.14 (1.39) | 69.79
UniPELT (APL) | 84.91 (1.41) | 83.56 (0.59) | 39.81 (2.55) | 64.12 (2.45) | 79.28 (0.63) | 85.26 (0.70) | 54.07 (3.74) | 68.87 (0.41) | 69.98
""",
    1000: """
Fine-tuning | 86.54 (1.01) | 84.87 (0.64) | 43.26 (2.60) | 62.31 (2.10) | 79.03 (1.11) | 86.39 (0.34) | 61.95 (1.20) | 71.09 (0.77) | 71.93
BitFit | 83.99 (0.39) | 83.95 (0.81) | 22.44 (17.10) | 62.89 (1.40) | 77.43 (0.53) | 79.04 (0.61) | 52.87 (0.72) | 69.50 (0.16) | 66.51
Adapter | 85.60 (0.63) | 84.49 (0.60) | 42.33 (1.98) | 61.81 (1.57) | 79.68 (0.23) | 85.52 (0.29) | 57.86 (2.44) | 70.32 (0.71) | 70.95
Prefix-tuning | 85.09 (0.99) | 83.66 (1.82) | 44.07 (2.90) | 66.71 (2.72) | 80.34 (0.70) | 82.38 (1.25) | 63.59 (1.12) | 68.58 (0.35) | 71.81
LoRA | 86.26 (1.22) | 86.04 (0.99) | 45.50 (1.11) | 65.63 (2.11) | 81.00 (0.98) | 81.56 (1.97) | 61.32 (1.65) | 70.89 (0.81) | 72.28
UniPELT (AP) | 86.17 (0.37) | 85.86 (1.05) | 44.33 (3.55) | 64.91 (1.92) | 80.65 (0.57) | 86.82 (0.23) | 62.17 (0.99) | 69.95 (0.90) | 72.61
UniPELT (APL) | 87.06 (0.81) | 86.65 (1.10) | 45.44 (1.97) | 65.49 (1.92) | 81.22 (0.51) | 87.10 (0.21) | 62.49 (0.94) | 70.99 (0.95) | 73.31
""",
    "full": """
Fine-tuning | 91.63 | 90.94 | 62.08 | 66.43 | 89.95 | 89.76 | 83.23 | 87.35 | 82.67
Adapter | 91.86 | 89.86 | 61.51 | 71.84 | 90.55 | 88.63 | 83.14 | 86.78 | 83.02
Prefix-tuning | 90.94 | 91.29 | 55.37 | 76.90 | 90.39 | 87.19 | 81.15 | 83.30 | 82.07
LoRA | 91.51 | 90.03 | 60.47 | 71.48 | 89.93 | 85.65 | 82.51 | 85.98 | 82.20
UniPELT (AP) | 91.86 | 90.28 | 61.15 | 71.84 | 90.77 | 88.86 | 83.41 | 86.74 | 83.12
UniPELT (AP)-NoGate | 91.74 | 90.18 | 58.63 | 71.12 | 90.30 | 88.76 | 81.58 | 85.53 | 82.23
UniPELT (APL) | 91.51 | 90.94 | 61.53 | 73.65 | 90.50 | 88.93 | 83.89 | 87.12 | 83.50
""",
}

# Table 2: average over tasks of the best single submodule per task, against UniPELT.
UPPER_BOUND = {  # K: (best of {A, P}, UniPELT (AP), best of {A, P, L}, UniPELT (APL))
    100: (58.86, 60.80, 60.60, 62.59),
    500: (69.69, 69.79, 70.02, 69.98),
    1000: (72.58, 72.61, 73.19, 73.31),
}

# Table 4: trainable parameters and cost relative to fine-tuning (percent).
COST = {  # method: (trainable, percent of the backbone, train time %, inference time %)
    "finetune": ("110M", 100.0, 100, 100),
    "bitfit": ("103K", 0.09, 65, 102),
    "prefix": ("184K", 0.17, 56, 114),
    "lora": ("295K", 0.27, 53, 105),
    "adapter": ("895K", 0.81, 55, 107),
    "unipelt_ap": ("1.1M", 0.99, 55, 118),
    "unipelt_apl": ("1.4M", 1.26, 67, 127),
}

_CELL = re.compile(r"^(-?\d+\.\d+)(?: \((\d+\.\d+)\))?$")


def _parse(block: str) -> dict[str, dict]:
    table = {}
    for line in block.strip().splitlines():
        label, *cells, avg = (part.strip() for part in line.split("|"))
        row = {}
        for task, cell in zip(TASKS, cells, strict=True):
            mean, std = _CELL.match(cell).groups()
            row[task] = (float(mean), float(std) if std is not None else None)
        row["avg"] = float(avg)
        table[METHOD_NAMES[label]] = row
    return table


SCORES: dict[int | str, dict[str, dict]] = {budget: _parse(block) for budget, block in _SCORES.items()}
"""SCORES[budget][method][task] = (mean, std or None); SCORES[budget][method]["avg"] = the paper's Avg."""


def score(budget: int | str, method: str, task: str) -> tuple[float, float | None] | None:
    return SCORES.get(budget, {}).get(method, {}).get(task)
