"""Read a W&B offline run file (`run-<id>.wandb`) with W&B's own protobuf records.

The file is a LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version), then 32 KiB
blocks of chunks (crc32: 4, length: 2, type: 1 = full, 2 = first, 3 = middle, 4 = last). wandb
itself reads it in its Go core (`wandb sync`); this is the same format read in a few lines."""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7


def records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    pos, parts = HEADER, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            continue
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            yield record


def _items(items) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def history(path: Path) -> list[dict]:
    return [_items(r.history.item) for r in records(path) if r.WhichOneof("record_type") == "history"]


def run_info(path: Path) -> dict:
    for record in records(path):
        if record.WhichOneof("record_type") == "run":
            return {"group": record.run.run_group, "name": record.run.display_name}
    return {}


def summary(path: Path) -> dict:
    out = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "summary":
            out.update(_items(record.summary.update))
    return out
