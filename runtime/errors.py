"""The one exception type for user errors, and the exit codes the CLIs document."""

from __future__ import annotations

import sys
from typing import Callable, NoReturn

# Exit codes shared by every command of the project (documented in the README).
EXIT_OK = 0
EXIT_USER = 1  # bad input, missing dependency, wrong artifact: the message says what to do
EXIT_USAGE = 2  # bad command line (argparse's own status)
EXIT_SOURCE = 3  # a source failed mid-run (stream lost, gave up reconnecting); results so far are written
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """An error the user can fix. Its message is one line: input, what was wrong, what to do."""

    def __init__(self, message: str, exit_code: int = EXIT_USER) -> None:
        super().__init__(" ".join(str(message).split()))
        self.exit_code = exit_code


def missing_dependency(module: str, extra: str, how: str | None = None) -> UserError:
    """The ImportError-turned-UserError for an optional dependency that is not installed."""
    hint = how or f"pip install 'jrc-edge[{extra}]'"
    return UserError(f"{module} is not installed: it is needed here (extra '{extra}'); install it with: {hint}")


def run_cli(main: Callable[[], int | None], prog: str) -> NoReturn:
    """Run a CLI entry point: user errors become one line on stderr and a non-zero exit."""
    try:
        code = main()
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code or EXIT_OK)
