"""The benchmark's worker process (started by ``WorkerRunner``): ``python -m mllib.bench --serve SPEC_JSON``."""
import json
import sys

from .runner import serve
from .spec import BenchSpec

sys.exit(serve(BenchSpec(**json.loads(sys.argv[sys.argv.index("--serve") + 1]))))
