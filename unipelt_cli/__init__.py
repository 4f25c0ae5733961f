"""unipelt: an experiment runner for parameter-efficient language-model tuning (UniPELT and friends)."""

__version__ = "0.1.0"

from unipelt_cli.hub import set_timeouts as _set_hub_timeouts  # noqa: E402

_set_hub_timeouts()  # every hub call gets a timeout: huggingface_hub reads them when it is imported
