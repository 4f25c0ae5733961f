"""Train-step time per method preset on identical batches, its FLOPs, and our LoRA against PEFT's.

    step = forward (autocast when bf16) + loss + backward + clip + AdamW step + zero_grad
    FLOPs of a step are counted once with torch's FlopCounterMode (matrix multiplies and attention);
    achieved FLOP/s = FLOPs / median step time, set against the matmul peak measured in this process.
Rounds interleave the configurations, so drifts in machine load hit them all alike.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.common import BATCHES, build, spread, train_batches
from unipelt_cli.train import autocast, loss_fn, make_optimizer


class Stepper:
    """One model and optimiser, stepping through a fixed list of batches."""

    def __init__(self, model, args, batches: list[dict], forward=None):
        self.model, self.args, self.batches = model, args, batches
        self.forward = forward or (lambda b: model(**b).logits)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer, _ = make_optimizer(model, args, 1000)
        self.i = 0
        model.train()

    def step(self) -> None:
        batch = dict(self.batches[self.i % len(self.batches)])
        self.i += 1
        labels = batch.pop("labels")
        with autocast(self.args.device, self.args.bf16):
            logits = self.forward(batch)
        self.last_loss = loss_fn(logits, labels, self.args.regression)
        self.last_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.args.max_grad_norm, foreach=True)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def one_pass(self) -> None:
        for _ in self.batches:
            self.step()

    def flops(self) -> float:
        """FLOPs of one step, averaged over one pass through the batches."""
        with FlopCounterMode(display=False) as counter:
            self.one_pass()
        return counter.get_total_flops() / len(self.batches)


def interleaved(steppers: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds per step for each stepper: one pass over its batches per round, steppers in turn."""
    import time

    times = {name: [] for name in steppers}
    for _ in range(rounds):
        for name, s in steppers.items():
            t0 = time.perf_counter()
            s.one_pass()
            times[name].append((time.perf_counter() - t0) / len(s.batches))
    return times


def method_steps(presets: list[str], rounds: int, task: str = "sst2") -> list[dict]:
    """Every preset in fp32 and bf16 on the same batches. Rows: method, precision, step spread, flops."""
    steppers, flops = {}, {}
    batches = None
    for method in presets:
        for precision in ("fp32", "bf16"):
            _, data, model, args = build(f"task={task}", f"method={method}", f"train.precision={precision}")
            batches = batches or train_batches(data, args, BATCHES)
            steppers[(method, precision)] = s = Stepper(model, args, batches)
            flops[(method, precision)] = s.flops()  # also the warm-up pass
    times = interleaved(steppers, rounds)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)
    padded = sum(b["attention_mask"].numel() for b in batches) / len(batches)
    return [
        {
            "method": m,
            "precision": p,
            "step": spread(times[(m, p)]),
            "flops": flops[(m, p)],
            "tokens": tokens,
            "padded": padded,
        }
        for (m, p) in steppers
    ]


ABLATIONS = {
    "defaults (bf16, grouped batches, fast dropout)": [],
    "plain shuffled batches (train.length_grouping=1)": ["train.length_grouping=1"],
    "torch dropout (train.fast_dropout=false)": ["train.fast_dropout=false"],
    "fp32 (train.precision=fp32)": ["train.precision=fp32"],
}


def ablation(method: str, rounds: int) -> list[dict]:
    """One method's step with each speed path switched off in turn; each row on its own batches
    (the first BATCHES batches of the same seed as that setting forms them)."""
    steppers = {}
    for name, overrides in ABLATIONS.items():
        _, data, model, args = build("task=sst2", f"method={method}", *overrides)
        batches = train_batches(data, args, BATCHES)
        steppers[name] = Stepper(model, args, batches)
        steppers[name].one_pass()  # warm-up
    times = interleaved(steppers, rounds)
    return [
        {"setting": name, "step": spread(times[name]),
         "padded": sum(b["attention_mask"].numel() for b in s.batches) / len(s.batches)}
        for name, s in steppers.items()
    ]  # fmt: skip


def peft_lora(base_model, r: int = 8, alpha: int = 16):
    """PEFT's LoRA at its defaults for sequence classification, on query and value like our preset."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=0.0,
                        target_modules=["query", "value"])  # fmt: skip
    return get_peft_model(base_model, config)


def lora_vs_peft(rounds: int) -> list[dict]:
    """Our LoRA preset and PEFT's LoRA on the same backbone and batches, each in fp32 and bf16 autocast."""
    steppers = {}
    batches = None
    for precision in ("fp32", "bf16"):
        _, data, ours, args = build("task=sst2", "method=lora", f"train.precision={precision}")
        batches = batches or train_batches(data, args, BATCHES)
        steppers[("unipelt lora", precision)] = Stepper(ours, args, batches)
        _, _, full, args = build("task=sst2", "method=finetune", f"train.precision={precision}")
        model = peft_lora(full)
        steppers[("peft lora", precision)] = Stepper(model, args, batches)
    for s in steppers.values():
        s.one_pass()  # warm-up
    times = interleaved(steppers, rounds)
    out = []
    for (name, precision), s in steppers.items():
        trainable = sum(p.numel() for p in s.params)
        out.append({"impl": name, "precision": precision, "step": spread(times[(name, precision)]),
                    "trainable": trainable})  # fmt: skip
    return out
