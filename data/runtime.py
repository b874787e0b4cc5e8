"""Run-time settings shared by every entry point: quiet TensorFlow, seeds, precision, common flags.

Importing TensorFlow prints CUDA and absl start-up lines straight to file descriptor 2, before any
Python logging is configured, so `import_tensorflow` silences the descriptor itself for the import.
"""
import argparse
import contextlib
import dataclasses
import errno
import os
import sys
from typing import Optional

DATA_DIR_ENV = "DEEPFAKE_KIT_DATA"  # where the data is, when --data-dir is not given
RUNS_DIR_ENV = "DEEPFAKE_KIT_RUNS"  # where experiments are written, when --runs-dir is not given
DEFAULT_RUNS_DIR = "runs"
DEFAULT_EXPERIMENT = "default"
DEFAULT_SEED = 1337
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
WRITE_ERRORS = {errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EPERM, errno.ENOTDIR, errno.EEXIST, errno.EDQUOT}


class UserError(Exception):
    """A problem the user can fix (bad argument, bad folder): printed as one line, exit status 2."""


def printable(text):
    """text with control characters (a newline in a file name) written as escapes, so one file is one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


@contextlib.contextmanager
def _silenced_stderr_fd():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """Import TensorFlow and Keras without their start-up noise; returns the tf module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" not in sys.modules:
        with _silenced_stderr_fd():
            import tensorflow  # noqa: F401
            import keras  # noqa: F401  (imported here so its own start-up is silenced too)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    return tf


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA, or DNNL_ before oneDNN 2) below the first with bfloat16 instructions:
# a machine capped at one of these runs bfloat16 emulated, slower than float32 (the way to test the AVX2 case)
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
ISAS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def onednn_cap():
    """The ISA oneDNN is capped at (ONEDNN_MAX_CPU_ISA), upper case, or "" where it is not."""
    return next((os.environ[name].strip().upper() for name in ISA_ENV if os.environ.get(name)), "")


def native_bfloat16():
    """True where bfloat16 runs in hardware: AMX or AVX512-BF16 in the CPU flags, and oneDNN not capped below."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"}) and onednn_cap() not in ISAS_WITHOUT_BF16


def bfloat16_refused():
    """Why bfloat16 cannot run here, or None. On an AVX-512 CPU TensorFlow hands bfloat16 convolutions to
    oneDNN, which, capped below bfloat16, has none to give (the step fails deep in TensorFlow); a CPU without
    AVX-512 runs them, slowly, in TensorFlow's own kernels."""
    if "avx512f" in cpu_flags() and onednn_cap() in ISAS_WITHOUT_BF16:
        return (f"--precision mixed_bfloat16: oneDNN is capped at {onednn_cap()} (ONEDNN_MAX_CPU_ISA), below "
                "bfloat16, and TensorFlow gives this CPU's bfloat16 convolutions to it; use --precision float32 "
                "(what auto chooses here) or lift the cap")
    return None


def resolve_precision(precision):
    """'auto' -> bfloat16 where the CPU has native bf16 matrix units, float16 on a GPU, else float32."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "mixed_bfloat16" and bfloat16_refused() and not import_tensorflow().config.list_physical_devices("GPU"):
        raise UserError(bfloat16_refused())
    if precision != "auto":
        return precision
    tf = import_tensorflow()
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    if native_bfloat16():
        return "mixed_bfloat16"
    return "float32"


def setup(seed, precision="auto", deterministic=True):
    """Seed Python, NumPy and TensorFlow; set the Keras dtype policy. Returns the policy name."""
    tf = import_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    if deterministic:
        # Cheap on CPU, and makes the same seed give the same numbers run after run.
        tf.config.experimental.enable_op_determinism()
    policy = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def setting(default=dataclasses.MISSING, *, identity=True, roles=None, extends=False, cap=None,
            added_later=dataclasses.MISSING):
    """A configuration field that says what it means for a finished run (read by data.runs.finished_run):
    identity=False: how the command ran, not what a run is (runs_dir, --retrain): never compared;
    roles: the kinds of run it shapes (e.g. a GAN's settings shape the GAN and the detectors fine-tuned from
        it); compared only for those (None: every kind);
    extends: a different value carries a finished run on instead of conflicting (a search's budget);
    cap: a limit that matters only where it cut the run short, named as its run.json's "stopped_by" says it
        (a GAN that reached its steps inside --gan-minutes is the same GAN as one without the cap);
    added_later: the value a run recorded before the setting existed was made with."""
    meta = {"identity": identity, "roles": roles, "extends": extends, "cap": cap}
    if added_later is not dataclasses.MISSING:
        meta["added_later"] = added_later
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CommandConfig:
    """What every training command's configuration holds (the flags of add_common_args, and --retrain), and
    how it is recorded. classifiers.config.DetectorConfig and gan.config.GanConfig add their own settings;
    each declares with setting() what it means for a run's identity."""
    seed: int = DEFAULT_SEED
    precision: str = "auto"
    runs_dir: str = setting(DEFAULT_RUNS_DIR, identity=False)
    experiment: str = setting(DEFAULT_EXPERIMENT, identity=False)  # where the run is, like runs_dir
    data_dir: Optional[str] = setting(None, identity=False)  # the split's fingerprint stands for the data
    strict: bool = setting(False, identity=False)
    split: str = setting("auto", identity=False)  # the split's fingerprint stands for which split was used
    align: str = setting("auto", added_later="none")  # data.align: how faces are framed, in training and after
    retrain: bool = setting(False, identity=False)

    def record(self):
        """The settings run.json keeps: every field but runs_dir (which says where, not what)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "runs_dir"}

    def identity(self, role=None):
        """{setting: (value now, value of a record that lacks it)} of what makes a run of `role` this run."""
        out = {}
        for f in dataclasses.fields(self):
            roles = f.metadata.get("roles")
            if f.metadata.get("identity", True) and (roles is None or role in roles):
                out[f.name] = (getattr(self, f.name), f.metadata.get("added_later"))
        return out

    def summary(self, role=None):
        """'config: model=baseline epochs=8 ...': the settings a `role` run reads (role None: every one), each
        once; unset ones and the bookkeeping flags at their defaults left out. What a command prints at its start."""
        shown = []
        for f in dataclasses.fields(self):
            value, roles = getattr(self, f.name), f.metadata.get("roles")
            if (role is not None and roles is not None and role not in roles) or value is None or value == {}:
                continue
            if not f.metadata.get("identity", True) and f.name not in ("experiment", "data_dir") \
                    and value == f.default:
                continue  # --strict, --split auto, --retrain: said only when given
            items = value.items() if isinstance(value, dict) else [(f.name, value)]
            shown += [f"{k}={v}" for k, v in items]
        return "config: " + " ".join(shown)

    def caps(self):
        """{setting: how run.json's stopped_by names it} of the limits: compared only where they stopped a run."""
        return {f.name: f.metadata["cap"] for f in dataclasses.fields(self) if f.metadata.get("cap")}

    def extending(self):
        """The settings whose change carries a finished run on (a larger search budget extends the search)."""
        return tuple(f.name for f in dataclasses.fields(self) if f.metadata.get("extends"))


def add_common_args(parser, data=True):
    """Flags every entry point shares."""
    if data:
        parser.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV),
                            help="data folder: Real/ + Fake/, {train,valid,test}/{real,fake}, one folder per generator "
                                 f"with 0_real/ + 1_fake/, ... (default: ${DATA_DIR_ENV}, else the embedded default)")
        parser.add_argument("--strict", action="store_true",
                            help="stop on a picture labelled both real and fake, or on one that a given split puts "
                                 "on two sides (default: leave it out, or report it; say so)")
        parser.add_argument("--split", default="auto", choices=("auto", "given", "made"),
                            help="given: the data set's own train/ val/ test/ folders; made: the kit's own split; "
                                 "auto (default): given where the folder has them")
        parser.add_argument("--align", default="auto", choices=("auto", "ffhq", "none"),
                            help="frame every face as FFHQ did (data/align.py): ffhq warps each picture's largest "
                                 "face; auto (default) uses a folder already at that framing as given and aligns "
                                 "any other; none: every picture as given. The run judges everything the same way")
    parser.add_argument("--runs-dir", default=os.environ.get(RUNS_DIR_ENV, DEFAULT_RUNS_DIR),
                        help=f"where experiments are written (default: ${RUNS_DIR_ENV} or ./runs)")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT,
                        help="experiment name: one folder, one shared split")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    return parser


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {value}")
    return value


def label_count(text):
    """--labels: a number of labelled training images (split evenly between the classes), a fraction of the
    training split (0 < f < 1), or 'all' (every label, as a named point of a curve over label counts)."""
    if text == "all":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of labelled images (e.g. 100), a fraction (0.1) or all")
    if value >= 1 and value == int(value):
        return str(int(value))
    if 0 < value < 1:
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: a whole number of images of at least 1, a fraction between 0 and 1, "
                                     "or all")


def default_of(config_class, name):
    """A configuration field's default: what a flag defaults to, written once, beside the field."""
    field = {f.name: f for f in dataclasses.fields(config_class)}[name]
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def progress_line(line, finished, logged):
    """A long job's progress on stderr: rewritten in place on a terminal; in a log file only the lines the
    caller marks `logged` (about every tenth of the way) and the last."""
    if sys.stderr.isatty():
        print("\r" + line, end="\n" if finished else "", file=sys.stderr, flush=True)
    elif finished or logged:
        print(line, file=sys.stderr, flush=True)


def configuration(parse_args, resolve_config, argv=(), settings=None):
    """A training command's configuration from its own flags (argv) and settings given by name in place of
    flags: how one command calls another (the learning curve calls both trainers). A name the command has
    no flag for is a TypeError at once, not a flag that fails when the run starts."""
    args = parse_args(list(argv))
    for name, value in (settings or {}).items():
        if not hasattr(args, name):
            raise TypeError(f"{parse_args.__module__} has no setting {name!r}")
        setattr(args, name, value)
    return resolve_config(args)


def run_main(main):
    """Run an entry point: user errors become one line and exit status 2, Ctrl-C exits 130."""
    for stream in (sys.stdout, sys.stderr):  # a file name that is not valid UTF-8 must not crash a print
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        return main()
    except UserError as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in WRITE_ERRORS:
            raise
        # a full disk or an unwritable folder: say which file; runs are renamed into place only when
        # complete, so earlier results are untouched
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot write{where}: {e.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; partial outputs were kept aside and the next run resumes from them",
              file=sys.stderr)
        return 130
    except Exception as e:  # a UserError raised inside tf.data (a damaged decode cache) arrives wrapped by TF
        inner = wrapped_user_error(e)
        if inner is None:
            raise
        print(f"error: {inner}", file=sys.stderr)
        return 2


def wrapped_user_error(error):
    """The message of a UserError that TensorFlow re-raised as its own error from inside a tf.data function."""
    if not type(error).__module__.startswith("tensorflow"):
        return None
    for name in ("UserError", "DamagedCache"):
        marker = f"{name}: "
        text = str(error)
        if marker in text:
            return text.split(marker, 1)[1].splitlines()[0].strip()
    return None
