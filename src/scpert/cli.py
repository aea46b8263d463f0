"""The ``scpert`` console command.

``scpert methods`` lists the registered methods and their presets; ``scpert describe METHOD
--preset PRESET`` prints the trainable parameters per module and their total, laid out like
StateXDiff Table 8 (module, parameters), without data. Methods appear through the registry.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from scpert.methods.registry import available_methods, get_method, get_spec


def human_count(n: int) -> str:
    """``85000000 -> 85.0M``, ``1600 -> 1.6K``; below 1,000 the number itself."""
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def parameter_table(counts: dict[str, int]) -> str:
    """Rows ``module  parameters  approx`` and a final ``total`` row (the sum of the rows)."""
    rows = [(module, n) for module, n in counts.items()] + [("total", sum(counts.values()))]
    width = max(len("module"), *(len(module) for module, _ in rows))
    lines = [f"{'module':<{width}}  {'parameters':>14}  {'approx':>7}"]
    lines += [f"{module:<{width}}  {n:>14,}  {human_count(n):>7}" for module, n in rows]
    return "\n".join(lines)


class UsageError(Exception):
    """A command-line argument names something that does not exist."""


def _describe(args: argparse.Namespace) -> int:
    if args.method not in available_methods():
        raise UsageError(
            f"unknown method '{args.method}' (available: {', '.join(available_methods())})"
        )
    spec = get_spec(args.method)
    if args.preset not in spec.presets:
        raise UsageError(
            f"method '{args.method}' has no preset '{args.preset}' (has: {', '.join(spec.presets)})"
        )
    method = get_method(args.method)
    counts = method.describe(args.preset)
    print(f"{method.name} (preset {args.preset}): trainable parameters")
    if not counts:
        print("(no trainable parameters: non-parametric method)")
    print(parameter_table(counts))
    return 0


def _methods(args: argparse.Namespace) -> int:
    names = available_methods()
    width = max(len(name) for name in names)
    for name in names:
        spec = get_spec(name)
        device = "gpu" if spec.uses_gpu else "cpu"
        print(f"{name:<{width}}  presets: {', '.join(spec.presets)}  ({device})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scpert", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    describe = commands.add_parser(
        "describe", help="trainable parameters per module of a method preset"
    )
    describe.add_argument("method", help="a registered method (see `scpert methods`)")
    describe.add_argument("--preset", default="paper", help="preset name (default: paper)")
    describe.set_defaults(run=_describe)
    methods = commands.add_parser("methods", help="list registered methods and their presets")
    methods.set_defaults(run=_methods)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        parser.exit(2, f"scpert: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
