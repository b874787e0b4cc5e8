"""`python -m compare.bench` (compare/bench/cli.py)."""
import sys

from compare.bench.cli import main
from data.runtime import run_main

sys.exit(run_main(main))
