"""The ``shiftattack`` command: :mod:`.main` builds the parser and dispatches; one module per group of
subcommands builds a job's config from its arguments. Nothing below ``cli`` imports it."""

from shiftattack.cli.main import main

__all__ = ["main"]
