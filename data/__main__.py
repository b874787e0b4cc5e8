"""`python -m data [DIR] [--split-out FILE]`: check a dataset and show the split it gets."""
import argparse
import os
import sys

from data.runs import write_json_atomic
from data.runtime import DATA_DIR_ENV, DEFAULT_RUNS_DIR, RUNS_DIR_ENV, run_main
from data.scan import scan_folder
from data.split import NEAR_COPY_BITS, describe, make_split, scan_cache_path
from data.synthetic import resolve_data_dir


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data", description=__doc__)
    parser.add_argument("data_dir", nargs="?", default=os.environ.get(DATA_DIR_ENV),
                        help=f"folder with Real/ and Fake/ (default: ${DATA_DIR_ENV}, else the embedded default)")
    parser.add_argument("--split-out", help="write the split manifest (JSON) here")
    parser.add_argument("--runs-dir", default=os.environ.get(RUNS_DIR_ENV, DEFAULT_RUNS_DIR),
                        help="where the hash cache (and the embedded default) live")
    parser.add_argument("--near-copy-bits", type=int, default=NEAR_COPY_BITS,
                        help="hash bits (of 256) within which two images count as copies")
    parser.add_argument("--strict", action="store_true",
                        help="stop on a picture labelled both real and fake (default: leave it out, say so)")
    parser.add_argument("--show-rejected", action="store_true", help="list every rejected file")
    args = parser.parse_args(argv)
    data_dir = resolve_data_dir(args.data_dir, args.runs_dir)
    scan = scan_folder(data_dir, cache_path=scan_cache_path(args.runs_dir))
    manifest = make_split(scan, threshold=args.near_copy_bits, strict=args.strict)
    for line in describe(manifest):
        print(line)
    if args.show_rejected or len(scan.rejected) <= 20:
        for path, reason in scan.rejected:
            print(f"rejected {path}: {reason}")
    if args.split_out:
        write_json_atomic(args.split_out, manifest)
        print(f"split manifest written to {args.split_out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
