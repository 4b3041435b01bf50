"""The command tree. Command modules add to these apps; nothing heavy is imported here."""

from __future__ import annotations

import typer

app = typer.Typer(help="Labelled images to a trained, evaluated and exported object detector.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Import, check and convert labelled data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
