"""The ``main()`` every benchmark script shares: arguments, one measurement, a table on stdout, figures as JSON. I/O.

    def main(argv=None):
        parser = cli.parser(__doc__)
        parser.add_argument("--alerts", type=int, default=100)
        args = parser.parse_args(argv)
        return cli.run(lambda: measure(url, args.alerts), report, lambda r: r.to_json(), args.json)

Exit status: 0, 2 when Redis does not answer (said on stderr, no traceback), or what ``verdict`` returns.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from stack import RedisUnavailable

R = TypeVar("R")


def parser(doc: str | None, *, json_default: Path | None = None) -> argparse.ArgumentParser:
    """Arguments described by the first paragraph of the script's docstring, with ``--json``."""
    described = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    described.add_argument("--json", type=Path, default=json_default, help="also write the figures to this file")
    return described


def progress(text: str) -> None:
    """Progress lines go to stderr, so stdout holds only the report."""
    print(text, file=sys.stderr, flush=True)


def write_json(path: Path, figures: object) -> None:
    # default=str: dataclasses turned into dicts may hold paths or enums; a figure file should never fail to write.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")


def run(
    measure: Callable[[], R],
    report: Callable[[R], str],
    to_json: Callable[[R], object],
    json_path: Path | None,
    *,
    verdict: Callable[[R], int] = lambda _: 0,
) -> int:
    """Measure, print the report, write the figures if asked; the exit status."""
    try:
        result = measure()
    except RedisUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2
    print(report(result))
    if json_path is not None:
        write_json(json_path, to_json(result))
    return verdict(result)
