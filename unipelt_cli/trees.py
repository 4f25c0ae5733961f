"""Nested dicts (configs, results) as flat {path: leaf} maps.

    leaves({"train": {"lr": 1e-4}, "tags": []})  ->  {("train", "lr"): 1e-4, ("tags",): []}
    dotted(...)                                   ->  {"train.lr": 1e-4, "tags": []}

A leaf is anything but a non-empty dict: lists are leaves (a config merge replaces them whole), and
so is an empty dict.
"""

from __future__ import annotations

from typing import Any


def leaves(tree: dict, prefix: tuple = ()) -> dict[tuple, Any]:
    out: dict[tuple, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(leaves(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def dotted(tree: dict) -> dict[str, Any]:
    return {".".join(str(k) for k in path): value for path, value in leaves(tree).items()}
