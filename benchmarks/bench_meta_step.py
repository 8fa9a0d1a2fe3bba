"""Seconds per meta-step: mllib loop/vmap against higher and learn2learn (thin wrapper).

Same options as ``python -m mllib bench`` (see ``--help``), e.g.::

    python benchmarks/bench_meta_step.py --threads 1 --out benchmarks/results/cpu_$(date +%F).json
"""
import sys

from mllib.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
