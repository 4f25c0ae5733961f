"""Display names and the paper's orderings: tasks as in its tables, methods as in its rows, budgets by K."""

from __future__ import annotations

from unipelt_cli.report.paper import TASKS

TASK_LABELS = {
    "sst2": "SST-2",
    "mrpc": "MRPC",
    "cola": "CoLA",
    "rte": "RTE",
    "qnli": "QNLI",
    "stsb": "STS-B",
    "mnli": "MNLI",
    "qqp": "QQP",
}
METHOD_LABELS = {
    "finetune": "Fine-tuning",
    "bitfit": "BitFit",
    "adapter": "Adapter",
    "prefix": "Prefix-tuning",
    "lora": "LoRA",
    "unipelt_ap": "UniPELT (AP)",
    "unipelt_apl": "UniPELT (APL)",
    "unipelt_ap_nogate": "UniPELT (AP)-NoGate",
    "unipelt_apl_nogate": "UniPELT (APL)-NoGate",
    "parallel_adapter": "Parallel adapter",
    "scaled_parallel_adapter": "Scaled PA",
    "mam": "MAM adapter",
    "ia3": "(IA)^3",
    "dora": "DoRA",
    "unipelt_mam": "UniPELT (MAM)",
    "unipelt_apli": "UniPELT (APL+IA3)",
}
# The unified-view comparison: which family of method wins where (report "Method families").
FAMILIES = {
    "Fine-tuning": ("finetune",),
    "Biases / rescaling": ("bitfit", "ia3"),
    "Adapters": ("adapter", "parallel_adapter", "scaled_parallel_adapter"),
    "Prefix": ("prefix",),
    "Low-rank": ("lora", "dora"),
    "Mixes, no gate": ("mam", "unipelt_ap_nogate", "unipelt_apl_nogate"),
    "Mixes, gated": ("unipelt_ap", "unipelt_apl", "unipelt_mam", "unipelt_apli"),
}
UNIFIED_VIEW = ("parallel_adapter", "scaled_parallel_adapter", "mam", "ia3", "dora", "unipelt_mam", "unipelt_apli")
METRIC_LABELS = {"accuracy": "acc", "f1": "F1", "matthews": "MCC", "spearman": "Spearman", "pearson": "Pearson"}


def task_label(task: str) -> str:
    return TASK_LABELS.get(task, task)


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def budget_label(budget: int | str) -> str:
    return "full data" if budget == "full" else f"K={budget}"


def task_key(task: str):
    return (TASKS.index(task), "") if task in TASKS else (len(TASKS), task)


def method_key(method: str):
    order = list(METHOD_LABELS)
    return (order.index(method), "") if method in order else (len(order), method)


def budget_key(budget: int | str):
    return (1, 0) if budget == "full" else (0, int(budget))
