"""The `lstmgen` command line: the verbs of the engine, the training and the HTTP client.

Each package adds its verbs with a module-level `register(subparsers)` in its `commands`
module, adding parsers whose defaults hold `handler`: a function taking the parsed arguments
and returning the exit status. Raising `CommandError` (or a ValueError, LookupError or OSError)
prints one line to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from shared.engine.model import ModelLoadError, UnknownCharactersError

Handler = Callable[[argparse.Namespace], int]
VERBS = (
    "shared.engine.commands",
    "training.commands",
    "shared.client.commands",
    "shared.client.training_commands",
)
ERROR_STATUS = 2


class CommandError(Exception):
    """A problem to report to the user in one line (exit status 2)."""


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with the verbs of every package that is installed."""
    parser = argparse.ArgumentParser(prog="lstmgen", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in VERBS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is not None and name.startswith(error.name):
                continue  # that package or module is not there
            raise
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (
        CommandError,
        ModelLoadError,
        UnknownCharactersError,
        ValueError,
        LookupError,
        OSError,
    ) as error:
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        one_line = " ".join(message.split())
        print(f"lstmgen {args.command}: error: {one_line}", file=sys.stderr)
        return ERROR_STATUS
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
