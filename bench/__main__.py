"""Run one benchmark: ``python -m bench <name> [args]``; ``python -m bench`` lists them.

A benchmark is a module ``bench/<name>.py`` with a ``main(argv)`` function. The list shows the
first line of each module's docstring, read from the source without importing it.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

_HERE = Path(__file__).parent


def _benchmarks() -> dict[str, str]:
    """Every benchmark by name, with the first line of its docstring."""
    found = {}
    for module in pkgutil.iter_modules([str(_HERE)]):
        if module.name.startswith("_"):
            continue
        source = (_HERE / f"{module.name}.py").read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(source)) or ""
        found[module.name] = doc.strip().splitlines()[0] if doc.strip() else ""
    return dict(sorted(found.items()))


def _usage() -> str:
    lines = ["usage: python -m bench <name> [args]", "", "benchmarks:"]
    lines += [f"  {name:<14} {summary}" for name, summary in _benchmarks().items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Run the benchmark ``argv[0]`` with the rest of ``argv``; list them without a name."""
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in _benchmarks():
        print(f"no benchmark named {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    importlib.import_module(f"bench.{name}").main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
