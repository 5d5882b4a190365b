"""Check the built sdist and wheel: what users download must contain what they need, and nothing of ours else.

    python .ci/package/check_dists.py DIST_DIR VERSION SOURCE_DIR

Run by .ci/package-test with the tool venv's python (standard library only, plus `trove_classifiers` when it is
installed, to refuse a misspelt classifier as PyPI would). Prints what it checked; exits 1 with every problem found.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

SDIST_REQUIRED = ("README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", "alerting/__init__.py", "alerting/py.typed")
WHEEL_REQUIRED = ("alerting/__init__.py", "alerting/py.typed", "alerting/cli.py", "alerting/contrib/django.py")
NOT_SHIPPED = ("tests/", "benchmarks/", "examples/", "docs/", "worker/", ".ci/", ".venv/")
# What the Redis transport needs at run time: kombu 5.7 imports `packaging`, which only its "redis" extra brings.
REQUIRES = ("celery[redis]", "kombu[redis]", "redis")
URLS = ("Homepage", "Documentation", "Changelog", "Issues")


def main(dist_dir: Path, version: str, source: Path) -> list[str]:
    problems: list[str] = []
    # Every Lua script of the source tree: the throttle's atomic steps, loaded from the installed package.
    lua = sorted(p.relative_to(source).as_posix() for p in source.glob("alerting/shared/stores/lua/*.lua"))
    if not lua:
        problems.append(f"no alerting/shared/stores/lua/*.lua under {source}")
    sdists = sorted(dist_dir.glob("*.tar.gz"))
    wheels = sorted(dist_dir.glob("*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        return [f"expected one sdist and one wheel in {dist_dir}, found {[p.name for p in [*sdists, *wheels]]}"]
    if f"-{version}" not in sdists[0].name or f"-{version}-" not in wheels[0].name:
        problems.append(f"file names do not carry version {version}: {sdists[0].name}, {wheels[0].name}")

    with tarfile.open(sdists[0]) as tar:
        root = sdists[0].name.removesuffix(".tar.gz") + "/"
        sdist = {m.name.removeprefix(root) for m in tar.getmembers() if m.isfile()}
    for name in (*SDIST_REQUIRED, *lua):
        if name not in sdist:
            problems.append(f"sdist lacks {name}")
    problems += [f"sdist ships {n}" for n in sorted(sdist) if n.startswith(NOT_SHIPPED)]
    print(f"sdist {sdists[0].name}: {len(sdist)} files")

    with zipfile.ZipFile(wheels[0]) as whl:
        wheel = set(whl.namelist())
        info = next((n for n in wheel if n.endswith(".dist-info/METADATA")), None)
        metadata = Parser().parsestr(whl.read(info).decode()) if info else None
    for name in (*WHEEL_REQUIRED, *lua):
        if name not in wheel:
            problems.append(f"wheel lacks {name}")
    top = {n.split("/", 1)[0] for n in wheel}
    if extra := sorted(t for t in top if t != "alerting" and not t.endswith(".dist-info")):
        problems.append(f"wheel ships top-level {extra} (only the alerting package belongs in it)")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel):
        problems.append("wheel lacks the LICENSE file in its .dist-info")
    print(f"wheel {wheels[0].name}: {len(wheel)} files, top level {sorted(top)}")

    if metadata is None:
        return [*problems, "wheel has no METADATA"]
    problems += _check_metadata(metadata, version)
    return problems


def _check_metadata(metadata: Message, version: str) -> list[str]:
    problems: list[str] = []
    if metadata["Version"] != version:
        problems.append(f"metadata version {metadata['Version']} != alerting.__version__ {version}")
    # "celery[redis]<6,>=5.4" -> "celery[redis]"; requirements of the extras ("; extra == ...") do not count.
    requires = [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
    names = {m.group(0).replace(" ", "") for r in requires if (m := re.match(r"[\w.-]+\s*(\[[^\]]*\])?", r))}
    problems += [f"Requires-Dist lacks {name} (has {requires})" for name in REQUIRES if name not in names]
    urls = {u.split(",", 1)[0].strip() for u in metadata.get_all("Project-URL") or []}
    problems += [f"no Project-URL {u}" for u in URLS if u not in urls]
    if metadata["License-Expression"] != "MIT":
        problems.append(f"License-Expression is {metadata['License-Expression']!r}, expected MIT")
    classifiers = metadata.get_all("Classifier") or []
    if "Typing :: Typed" not in classifiers:
        problems.append("no Typing :: Typed classifier")
    try:
        from trove_classifiers import classifiers as known
    except ImportError:
        print("(trove-classifiers not installed: classifier spelling not checked)")
    else:
        problems += [f"unknown classifier {c!r}" for c in classifiers if c not in known]
    print(f"metadata: version {metadata['Version']}, requires {requires}, {len(classifiers)} classifiers")
    print(f"project urls: {sorted(urls)}")
    return problems


if __name__ == "__main__":
    found = main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
    for problem in found:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)
