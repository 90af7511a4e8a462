"""Write the public API of the installed ``tensorrt`` module as JSON (see README.md beside this file).

Usage: ``python trt-api/dump.py > trt-api/tensorrt-<version>.json``
"""

from __future__ import annotations

import inspect
import json
import sys


def members(cls: type) -> list[str]:
    """A class's public attribute names (enum values included: pybind11 enums expose them as attributes)."""
    return sorted(n for n in dir(cls) if not n.startswith("_"))


def api(module) -> dict:
    top: dict[str, object] = {}
    for name in sorted(dir(module)):
        if name.startswith("_"):
            continue
        value = getattr(module, name)
        top[name] = members(value) if inspect.isclass(value) else type(value).__name__
    return {"__version__": str(module.__version__), "top": top}


def main() -> int:
    try:
        import tensorrt
    except ImportError as e:
        print(f"dump.py: error: tensorrt: cannot import it ({e}); install the release's wheel first, "
              "e.g. pip install tensorrt==10.3.0", file=sys.stderr)
        return 1
    json.dump(api(tensorrt), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
