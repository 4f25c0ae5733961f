"""A quick check that the Hugging Face hub answers, so an offline machine fails in a second.

Without it, an offline `datasets.load_dataset` retries for about 25 seconds before it gives up.
When the user asked for offline mode (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), the libraries read
their local caches and no check is made.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


def offline_mode() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def unreachable_reason(timeout: float = 3.0) -> str | None:
    """None when the hub host accepts a TCP connection (or offline mode is on), else why not."""
    if offline_mode():
        return None
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"{host}:{port} unreachable: {exc.strerror or exc}"
    return None
