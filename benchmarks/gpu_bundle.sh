#!/usr/bin/env bash
# Prepare .gpu/ (ignored by git) for benchmarks/gpu_check.sh on a device machine with no network:
#   .gpu/omniglot/   the two Omniglot zips (from $MLLIB_DATA)
#   .gpu/pkgs/       the optional benchmark references, installable there without a network:
#                    higher 0.2.1, gym 0.26.2 and gym-notices as wheels (learn2learn imports gym), and
#                    learn2learn 0.2.0 as a source tree whose C files were regenerated with `cython -3`
#                    (the published ones do not compile on Python >= 3.11); it compiles there.
# Then run `bash benchmarks/gpu_check.sh` there with carry [".gpu"] (about 15 MB travel).
# Usage: MLLIB_DATA=../shared/data/omniglot bash benchmarks/gpu_bundle.sh     (needs PyPI for the references)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
: "${MLLIB_DATA:?set MLLIB_DATA to the folder with images_background.zip and images_evaluation.zip}"
rm -rf .gpu && mkdir -p .gpu/omniglot .gpu/pkgs .gpu/tmp
cp "$MLLIB_DATA"/images_background.zip "$MLLIB_DATA"/images_evaluation.zip .gpu/omniglot/
download() { "$PY" -m pip download -q --no-deps -d .gpu/tmp "$@" 2>&1 | grep -v "is ignored" || true; }
download higher==0.2.1 gym==0.26.2 gym-notices==0.1.0
download --no-binary :all: learn2learn==0.2.0
if ls .gpu/tmp/learn2learn-*.tar.gz .gpu/tmp/gym-*.tar.gz .gpu/tmp/higher-*.whl >/dev/null 2>&1; then
    cp .gpu/tmp/higher-*.whl .gpu/tmp/gym_notices-*.whl .gpu/pkgs/ 2>/dev/null || true
    "$PY" -m pip wheel -q --no-deps -w .gpu/pkgs .gpu/tmp/gym-*.tar.gz        # pure Python: a wheel here
    tar xzf .gpu/tmp/learn2learn-*.tar.gz -C .gpu/pkgs                       # C extensions: built there
    "$PY" -m pip install -q cython >/dev/null
    rm -rf .gpu/pkgs/learn2learn-*/docs .gpu/pkgs/learn2learn-*/examples .gpu/pkgs/learn2learn-*/tests
    for pyx in .gpu/pkgs/learn2learn-*/learn2learn/data/*.pyx; do "$PY" -m cython -3 "$pyx" >/dev/null; done
else
    echo "no PyPI: the bundle holds Omniglot only (the benchmark will compare mllib's own forms)"
fi
rm -rf .gpu/tmp
du -sh .gpu; ls .gpu/pkgs
