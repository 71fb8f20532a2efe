"""Build the wheel and sdist and check that they are fit to publish.

Usage::

    python tools/check_dist.py [--dist-dir DIR] [--no-build]

Steps: ``python -m build`` (into a temporary directory unless ``--dist-dir`` is given),
``twine check --strict`` on both files, then a look inside them: the wheel must hold the
package with ``py.typed`` and ``waygpt.testing``, the licence, the console script and the
metadata PyPI shows (licence expression, Markdown README, project URLs, dependencies), the
pytest plugin (the top-level ``waygpt_pytest`` module and its ``pytest11`` entry point), and no
tests; the sdist must hold what is needed to rebuild and test. Finally the package is imported
straight from the wheel file, in a fresh interpreter, to prove the wheel alone is complete.

Exits non-zero with a list of the problems found.
"""

from __future__ import annotations

import argparse
import email
import email.message
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parent.parent
NAME = "waygpt"
# The pytest plugin is a top-level module beside the package, so that loading it imports
# nothing of waygpt (see src/waygpt_pytest.py).
PLUGIN_MODULE = "waygpt_pytest.py"

WHEEL_MUST_HAVE = [
    "waygpt/__init__.py",
    "waygpt/py.typed",
    "waygpt/client.py",
    "waygpt/cli/__init__.py",
    "waygpt/cli/demo.py",
    "waygpt/testing/__init__.py",
    PLUGIN_MODULE,
]
SDIST_MUST_HAVE = [
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "CHANGELOG.md",
    "src/waygpt/py.typed",
    "src/waygpt/testing/__init__.py",
    f"src/{PLUGIN_MODULE}",
    "tools/build_single_file.py",
    "docs/index.md",
    "examples/chat_basic.py",
    "tests/conftest.py",
]


def _version() -> str:
    namespace: dict[str, object] = {}
    exec((ROOT / "src" / NAME / "_version.py").read_text(encoding="utf-8"), namespace)
    return str(namespace["__version__"])


def _run(command: List[str], quiet: bool = False) -> None:
    """Run a command from the project root; a quiet one shows its output only on failure."""
    print("$", " ".join(command), flush=True)
    if not quiet:
        subprocess.run(command, check=True, cwd=ROOT)
        return
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        raise SystemExit(f"command failed with exit status {result.returncode}")
    print(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "(no output)")


def _one(dist_dir: Path, pattern: str) -> Path:
    found = sorted(dist_dir.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"expected one {pattern} in {dist_dir}, found {found}")
    return found[0]


def check_wheel(wheel: Path, version: str) -> List[str]:
    problems: List[str] = []
    if not wheel.name.startswith(f"{NAME}-{version}-py3-none-any"):
        problems.append(f"unexpected wheel name {wheel.name} (want a pure py3 wheel of {version})")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"{NAME}-{version}.dist-info"
        for required in WHEEL_MUST_HAVE:
            if required not in names:
                problems.append(f"wheel lacks {required}")
        if not any(n.startswith(f"{dist_info}/licenses/") and n.endswith("LICENSE") for n in names):
            problems.append("wheel lacks the LICENSE file in .dist-info/licenses/")
        stray = sorted(
            n for n in names if n.split("/")[0] not in (NAME, dist_info, PLUGIN_MODULE)
        )
        if stray:
            problems.append(f"wheel holds files outside the package: {stray[:5]}")
        if any("__pycache__" in n or n.endswith(".pyc") for n in names):
            problems.append("wheel holds compiled files")
        metadata = email.message_from_bytes(archive.read(f"{dist_info}/METADATA"))
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode("utf-8")
    problems += _check_metadata(metadata, version)
    if "waygpt = waygpt.cli:main" not in entry_points:
        problems.append("the waygpt console script is missing from entry_points.txt")
    if "[pytest11]\nwaygpt = waygpt_pytest" not in entry_points:
        problems.append("the pytest11 entry point waygpt = waygpt_pytest is missing")
    return problems


def _check_metadata(metadata: email.message.Message, version: str) -> List[str]:
    problems: List[str] = []

    def want(field: str, value: str) -> None:
        if metadata.get(field) != value:
            problems.append(f"METADATA {field} is {metadata.get(field)!r}, want {value!r}")

    want("Name", NAME)
    want("Version", version)
    want("License-Expression", "MIT")
    want("Requires-Python", ">=3.9")
    if not (metadata.get("Description-Content-Type") or "").startswith("text/markdown"):
        problems.append("the long description is not declared as Markdown")
    description = metadata.get_payload()
    if not isinstance(description, str) or "WayGPT" not in description:
        problems.append("the README is not the long description")
    urls = metadata.get_all("Project-URL") or []
    for label in ("Homepage", "Documentation", "Source", "Changelog"):
        if not any(url.lower().startswith(label.lower() + ",") for url in urls):
            problems.append(f"Project-URL {label} is missing")
    requires_dist = metadata.get_all("Requires-Dist") or []
    runtime = [r for r in requires_dist if "extra ==" not in r]
    for dependency in ("requests", "urllib3"):
        if not any(r.startswith(dependency) for r in runtime):
            problems.append(f"Requires-Dist lacks {dependency}")
    extra_runtime = [r for r in runtime if not r.startswith(("requests", "urllib3"))]
    if extra_runtime:
        problems.append(f"run-time dependencies beyond requests and urllib3: {extra_runtime}")
    if not any(r.startswith("aiohttp") and "extra == \"aiohttp\"" in r for r in requires_dist):
        problems.append('the "aiohttp" extra does not require aiohttp')
    classifiers = metadata.get_all("Classifier") or []
    if "Typing :: Typed" not in classifiers:
        problems.append("classifier Typing :: Typed is missing")
    if any(c.startswith("License ::") for c in classifiers):
        problems.append("a License classifier duplicates License-Expression (PEP 639)")
    return problems


def check_sdist(sdist: Path, version: str) -> List[str]:
    problems: List[str] = []
    prefix = f"{NAME}-{version}/"
    with tarfile.open(sdist) as archive:
        names = {n[len(prefix) :] for n in archive.getnames() if n.startswith(prefix)}
    for required in SDIST_MUST_HAVE:
        if required not in names:
            problems.append(f"sdist lacks {required}")
    if any("__pycache__" in n or n.endswith(".pyc") for n in names):
        problems.append("sdist holds compiled files")
    return problems


def check_import_from_wheel(wheel: Path) -> List[str]:
    """Import the package from the wheel alone (a pure-Python wheel is a valid zip import)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import waygpt, waygpt.testing; "
        "assert waygpt.__file__.startswith(sys.argv[1]), waygpt.__file__; "
        "print(waygpt.__version__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(wheel)],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        check=False,
    )
    if result.returncode != 0:
        return [f"importing waygpt from the wheel failed:\n{result.stderr.strip()}"]
    return []


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dist-dir", type=Path, help="build into (or, with --no-build, read) DIR")
    parser.add_argument("--no-build", action="store_true", help="check the files already in DIR")
    args = parser.parse_args(argv)
    if args.no_build and args.dist_dir is None:
        parser.error("--no-build needs --dist-dir")

    with tempfile.TemporaryDirectory(prefix="waygpt-dist-") as scratch:
        dist_dir = (args.dist_dir or Path(scratch)).resolve()
        if not args.no_build:
            dist_dir.mkdir(parents=True, exist_ok=True)
            for pattern in (f"{NAME}-*.whl", f"{NAME}-*.tar.gz"):
                for old in dist_dir.glob(pattern):
                    old.unlink()
            _run([sys.executable, "-m", "build", "--outdir", str(dist_dir), str(ROOT)], quiet=True)
        version = _version()
        wheel = _one(dist_dir, f"{NAME}-*.whl")
        sdist = _one(dist_dir, f"{NAME}-*.tar.gz")
        _run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)])
        problems = check_wheel(wheel, version) + check_sdist(sdist, version)
        problems += check_import_from_wheel(wheel)

    if problems:
        print("check_dist: FAILED", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"check_dist: OK ({wheel.name}, {sdist.name}: py.typed, testing, LICENSE, metadata)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
