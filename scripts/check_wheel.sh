#!/usr/bin/env bash
# The packaging check (`make package-test`, part of `make test` and so of CI): build the wheel from
# the package's own files, install it into a fresh virtual environment, and run it from a folder
# outside the checkout: `python -m mllib --help`, `eval` of a shipped checkpoint (by name) and
# `course build` of this checkout's notebooks, plus the metadata, files and code version it reports,
# and that `bench --readme` refuses (it would write into the package).
#
# Fast on purpose (CI has 2 cores and a time budget): the fresh venv gets no pip and no copy of
# torch & co. The wheel is installed into the bare venv first; then a .pth file appends the
# project venv's site-packages to its sys.path, for the dependencies only. mllib itself must come
# from the wheel: the check fails when mllib.__file__ is not inside the fresh venv (the project
# venv's editable install is not active there: .pth files in an appended folder are not run).
# The fresh venv lies in build/, inside this checkout's git work tree, on purpose: the installed
# package must still report no git commit (it is not a checkout), only its version.
#
#   PY=.venv/bin/python bash scripts/check_wheel.sh      # PY: the project venv's python
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$REPO/.venv/bin/python}"
case "$PY" in /*) ;; *) PY="$REPO/$PY" ;; esac
WORK="$REPO/build/wheel-check"
RUN="$(mktemp -d)"
trap 'rm -rf "$RUN"' EXIT
start=$(date +%s)
elapsed() { echo "  [$(( $(date +%s) - start )) s] $*"; }

rm -rf "$WORK"
mkdir -p "$WORK/src" "$WORK/dist"
# a clean source tree: exactly what the wheel is made of (no stale build/ or egg-info of the checkout)
cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/LICENSE" "$REPO/mllib" "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/*.whl)"
elapsed "built $(basename "$WHEEL") ($(( $(stat -c %s "$WHEEL") / 1024 )) KiB)"

"$PY" -m venv --without-pip "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$PY" -m pip --python "$VPY" install --quiet --no-deps --no-index "$WHEEL"
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$SITE/_project_venv_dependencies.pth"
elapsed "installed into a fresh venv"

export MLLIB_DATA="${MLLIB_DATA:-$REPO/data}"
export MLLIB_CACHE="${MLLIB_CACHE:-$REPO/data/cache}"
export MLLIB_DEVICE=cpu CI="${CI:-1}" PYTHONNOUSERSITE=1
unset PYTHONPATH
cd "$RUN"

"$VPY" - "$SITE" "$WHEEL" <<'PYCHECK'
import importlib.metadata as md
import sys
import zipfile
from pathlib import Path

import mllib
from mllib.checkpoint import code_version
from mllib.provenance import DISTRIBUTION, checkout_root

site, wheel = Path(sys.argv[1]).resolve(), sys.argv[2]
where = Path(mllib.__file__).resolve()
assert site in where.parents, f"mllib imported from {where}, not from the wheel in {site}"
meta = md.metadata(DISTRIBUTION)
assert meta["Version"] == mllib.__version__, (meta["Version"], mllib.__version__)
assert meta["License-Expression"] == "MIT", meta["License-Expression"]
extras = set(meta.get_all("Provides-Extra"))
assert {"course", "notebooks", "test"} <= extras, extras
assert checkout_root() is None, "an installed package must not take itself for a checkout"
version = code_version()
assert version == {"version": mllib.__version__, "git_commit": None}, version
names = zipfile.ZipFile(wheel).namelist()
for needed in ("mllib/course_config.json", "mllib/checkpoints/maml_omniglot_5w1s_quick.pt",
               "mllib/checkpoints/maml_omniglot_5w1s_quick.json", "mllib/checks/i18n/zh.json"):
    assert needed in names, f"the wheel lacks {needed}"
assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "the wheel lacks LICENSE"
assert not any(n.startswith(("tests/", "notebooks/", "benchmarks/")) for n in names)
print(f"installed {DISTRIBUTION} {meta['Version']} from the wheel: {where.parent}; code version {version}")
PYCHECK
elapsed "checked the installed package"
"$VPY" -m mllib --help > "$RUN/help.txt"
grep -q "eval" "$RUN/help.txt"
elapsed "python -m mllib --help"
# by name, as the model card's eval_command writes it: found in the installed package from any folder
"$VPY" -m mllib eval --checkpoint maml_omniglot_5w1s_quick \
    --tasks 20 --batch-size 20 --split test --json > "$RUN/eval.json"
"$VPY" - "$RUN/eval.json" <<'PYCHECK'
import json
import sys

result = json.load(open(sys.argv[1]))
accuracy = result.get("accuracy", result.get("mean"))
assert accuracy is not None and accuracy > 0.6, result
print(f"eval of the shipped checkpoint on 20 test tasks: accuracy {accuracy:.3f}")
PYCHECK
elapsed "eval"
"$VPY" -m mllib course build --src "$REPO/notebooks" --out "$RUN/student"
test "$(ls "$RUN"/student/*.ipynb | wc -l)" -eq "$(ls "$REPO"/notebooks/*.ipynb | wc -l)"
elapsed "course build"
# nothing is written into the installed package: bench --readme needs a checkout and says so
if "$VPY" -m mllib bench --readme 2> "$RUN/readme.err"; then echo "bench --readme ran outside a checkout"; exit 1; fi
grep -q "checkout" "$RUN/readme.err"
elapsed "bench --readme refused outside a checkout"
echo "wheel check: ok in $(( $(date +%s) - start )) s"
