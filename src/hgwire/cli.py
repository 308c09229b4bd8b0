"""The ``hgwire`` command line.

Each feature module that offers commands exposes ``register(subparsers)``; this module only
collects them, so command definitions live next to the code they drive.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hgwire import __version__
from hgwire.errors import HgwireError

DESCRIPTION = """\
hgwire serves Mercurial repositories over both of Mercurial's wire protocols and reads and
writes repositories itself. It is a server-side tool: it has no working directory and never
checks files out.
"""

# Modules that contribute subcommands through ``register(subparsers)``.
COMMAND_MODULES = (
    "hgwire.wire.debugcmds",
    "hgwire.repo.commands",
    "hgwire.server.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="hgwire", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"hgwire {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        status: int = func(args)
    except HgwireError as exc:
        print(f"abort: {exc}", file=sys.stderr)
        return 255
    except BrokenPipeError:
        return 1
    return status
