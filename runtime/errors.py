"""The one exception type for user errors, and the exit codes the CLIs document."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn

# Exit codes shared by every command of the project (documented in the README).
EXIT_OK = 0
EXIT_USER = 1  # bad input, missing dependency, wrong artifact: the message says what to do
EXIT_USAGE = 2  # bad command line (argparse's own status)
EXIT_SOURCE = 3  # a source failed mid-run (stream lost, gave up reconnecting); results so far are written
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """An error the user can fix. Its message is one line: input, what was wrong, what to do; a
    camera's credentials in it are hidden (:func:`runtime.redact.shown`)."""

    def __init__(self, message: str, exit_code: int = EXIT_USER) -> None:
        from runtime.redact import shown

        super().__init__(shown(" ".join(str(message).split())))
        self.exit_code = exit_code


class Parser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line like every other user error (argparse prints its
    whole usage block first): the flag, what was wrong, where to look; exit code 2."""

    def error(self, message: str) -> NoReturn:
        name = self.prog.removeprefix("python -m ")  # the prefix of the tool's other errors (run_cli's)
        self.exit(EXIT_USAGE, f"{name}: error: {message}; see {self.prog} --help\n")


# The optional-dependency groups of pyproject.toml ([project.optional-dependencies]); a test keeps
# them equal. ``None`` names the package's own dependencies (``pip install -e .``).
EXTRAS = ("train", "tensorrt", "box", "dev")


def missing_dependency(module: str, extra: str | None, how: str | None = None) -> UserError:
    """The ImportError-turned-UserError for a dependency that is not installed.

    ``extra`` is the pyproject extra that installs it, or None for one of the package's own
    dependencies; ``how`` replaces the default install command.
    """
    if extra is not None and extra not in EXTRAS:
        raise ValueError(f"missing_dependency: no extra named {extra!r}; the extras are {EXTRAS}")
    where = f"extra '{extra}'" if extra else "a dependency of jrc-edge itself"
    hint = how or (f"pip install 'jrc-edge[{extra}]'" if extra else f"pip install {module}")
    return UserError(f"{module} is not installed: it is needed here ({where}); install it with: {hint}")


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
