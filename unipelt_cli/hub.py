"""A quick check that the Hugging Face hub answers, so an offline machine fails in seconds, not minutes.

Without it, an offline `datasets.load_dataset` retries for about 25 seconds before it gives up, and a
host that accepts connections but never answers (a dead proxy, a firewall that swallows packets)
keeps huggingface_hub waiting through its retries for minutes. The check connects, sends one HEAD
request and waits for the first byte of an answer, all within PROBE_TIMEOUT_S. Past the check, every
hub call has a timeout too: `set_timeouts` gives huggingface_hub's HF_HUB_ETAG_TIMEOUT and
HF_HUB_DOWNLOAD_TIMEOUT a value when the user has not (they are read when huggingface_hub is
imported, so the package sets them on import). When the user asked for offline mode
(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), the libraries read their local caches and no check is made.
"""

from __future__ import annotations

import os
import socket
import time
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 5.0  # the whole check: connect, (TLS,) HEAD, first byte
HUB_TIMEOUTS = {"HF_HUB_ETAG_TIMEOUT": "10", "HF_HUB_DOWNLOAD_TIMEOUT": "10"}  # seconds per request
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def set_timeouts() -> None:
    for name, seconds in HUB_TIMEOUTS.items():
        os.environ.setdefault(name, seconds)


def offline_mode() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def unreachable_reason(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the hub answers (or offline mode is on, or a proxy is set), else why not."""
    if offline_mode() or any(os.environ.get(v) for v in PROXY_VARS):
        return None  # through a proxy the hub is not reached directly: the request timeouts apply
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return f"{host}:{port} unreachable: {exc.strerror or exc}"
    try:
        if url.scheme != "http":
            import ssl

            # liveness only: the libraries verify certificates on the real requests
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock = context.wrap_socket(sock, server_hostname=host)
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        sock.sendall(f"HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        if not sock.recv(1):
            return f"{host}:{port} closed the connection without an answer"
    except TimeoutError:
        return f"{host}:{port} accepted the connection but did not answer within {timeout:.0f} s"
    except OSError as exc:
        return f"{host}:{port} did not answer: {exc.strerror or exc}"
    finally:
        sock.close()
    return None
