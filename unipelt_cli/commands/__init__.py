"""Extra `unipelt` commands, one module each, found and imported by `unipelt_cli.cli`.

A module here registers its command on the shared app:

    from unipelt_cli.cli import app, user_errors

    @app.command("sweep")
    @user_errors
    def sweep(...): ...

Keep heavy imports (torch, transformers, matplotlib) inside the command function, so `--help`
stays fast.
"""
