"""`python -m data [DIR] [--split-out FILE]`: check a dataset, show the layout found and the split it gets.

With --experiment NAME --decode SIZE [SIZE ...], also write (or reuse) that experiment's split and decode
its three sides at those sizes into the experiment's decode cache (data.cache), which every run then reads:
worth doing once before many runs on a large folder. With --align auto|ffhq, also find every image's face
(data/align.py; found once per file, cached beside the scan's hashes) and say how many alignment keeps as
they are, aligns, or cannot judge (each named), and which hold several faces."""
import argparse
import os
import sys

from data import align
from data.cache import cache_folder, cached_split
from data.pipeline import RESIZE, RESIZE_MODES
from data.runs import experiment_dir, write_json_atomic
from data.runtime import DATA_DIR_ENV, DEFAULT_RUNS_DIR, RUNS_DIR_ENV, positive_int, printable, run_main
from data.scan import scan_folder
from data.split import NEAR_COPY_BITS, SPLIT_SOURCES, SPLITS, describe, experiment_split, make_split, scan_cache_path
from data.synthetic import resolve_data_dir


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data", description=__doc__)
    parser.add_argument("data_dir", nargs="?", default=os.environ.get(DATA_DIR_ENV),
                        help=f"data folder: Real/ + Fake/ or another layout data.layout reads (default: ${DATA_DIR_ENV}, "
                             "else the embedded default)")
    parser.add_argument("--split-out", help="write the split manifest (JSON) here")
    parser.add_argument("--runs-dir", default=os.environ.get(RUNS_DIR_ENV, DEFAULT_RUNS_DIR),
                        help="where the hash cache (and the embedded default) live")
    parser.add_argument("--near-copy-bits", type=int, default=NEAR_COPY_BITS,
                        help="hash bits (of 256) within which two images count as copies")
    parser.add_argument("--strict", action="store_true",
                        help="stop on a picture labelled both real and fake (default: leave it out, say so)")
    parser.add_argument("--split", default="auto", choices=SPLIT_SOURCES,
                        help="given: the data set's own train/ val/ test/ folders; made: the kit's own; auto: given "
                             "where the folder has them")
    parser.add_argument("--show-rejected", action="store_true", help="list every rejected file")
    parser.add_argument("--experiment", help="also write (or reuse) this experiment's split (runs/NAME/split.json)")
    parser.add_argument("--decode", type=positive_int, nargs="+", metavar="SIZE", default=(),
                        help="with --experiment: decode its train, val and test images at these sizes into its cache")
    parser.add_argument("--resize-mode", choices=RESIZE_MODES, default=RESIZE, help="how --decode fits a face")
    parser.add_argument("--align", choices=align.ALIGN_MODES,
                        help="also find every image's face and say what this alignment makes of the folder; with "
                             "--decode, decode the sides as a training command with this --align does (default auto, "
                             "as the training commands)")
    parser.add_argument("--align-size", type=positive_int, default=64,
                        help="with --align: the detector input the faces are judged for (a face's eye distance must "
                             "be at least an eighth of it)")
    args = parser.parse_args(argv)
    if args.decode and not args.experiment:
        parser.error("--decode needs --experiment (the cache belongs to an experiment's split)")
    data_dir = resolve_data_dir(args.data_dir, args.runs_dir)
    scan = scan_folder(data_dir, cache_path=scan_cache_path(args.runs_dir))
    manifest = make_split(scan, threshold=args.near_copy_bits, strict=args.strict, split=args.split,
                          cache_dir=os.path.dirname(scan_cache_path(args.runs_dir)))
    for line in describe(manifest):
        print(line)
    if args.show_rejected or len(scan.rejected) <= 20:
        for path, reason in scan.rejected:
            print(f"rejected {printable(path)}: {reason}")
    if args.align not in (None, "none"):
        cache = align.LandmarkCache(align.landmarks_path(args.runs_dir))
        for line in align.survey(data_dir, scan.images, args.align, args.align_size, cache).lines(args.align):
            print(line)
        print(align.resolve(args.align, data_dir, align.pictures(scan.images), cache, args.align_size).why)
    if args.split_out:
        write_json_atomic(args.split_out, manifest)
        print(f"split manifest written to {args.split_out}")
    if args.experiment:
        manifest = experiment_split(data_dir, args.runs_dir, args.experiment, log=lambda line: None, strict=args.strict,
                                    split=args.split)
        print(f"experiment {args.experiment}: split {manifest['fingerprint'][:16]} in "
              f"{os.path.join(experiment_dir(args.runs_dir, args.experiment), 'split.json')}")
        for size in args.decode:  # decoded as a training command with this --align decodes them
            aligner = align.split_framing(manifest, args.align or "auto", args.runs_dir, size)[1]
            for side in SPLITS:
                cached_split(manifest, side, size, args.resize_mode, cache_folder(args.runs_dir, args.experiment),
                             aligner=aligner)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
