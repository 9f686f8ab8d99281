"""`edgelabels VERB ...`: one verb per job. Parses, calls the library, prints.

Each verb lives in a command module exposing `add_arguments(parser)` and `run(args) -> int | None`.
Command modules import nothing heavy at module level, so `edgelabels predict --help` never loads
TensorFlow. Errors the user can fix (UserError) become one line on stderr and exit code 2.
TensorFlow's C++ start-up logging is silenced unless --verbose (quiet_tensorflow_start_up).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import logging
import os
import re
import sys
import tempfile

from edgelabels import __version__
from edgelabels.errors import UserError
from edgelabels.tasks import TASKS


def _nouns() -> str:
    """'classifier, ... or detector': every task's model, from the task table, so the help cannot fall behind it."""
    nouns = [task.noun for task in TASKS.values()]
    return ", ".join(nouns[:-1]) + " or " + nouns[-1]


# verb -> (command module, one-line help)
VERBS = {
    "dataset": ("edgelabels.data.command", "inspect, split, augment, generate or convert a labelled image dataset"),
    "train": ("edgelabels.train.command", f"train a {_nouns()} from a YAML config, or from the data alone "
              "(every choice made from the data and a --budget)"),
    "tune": ("edgelabels.tune.command", "search models and hyperparameters within a wall-clock budget; export the best"),
    "evaluate": ("edgelabels.evaluate.command", "evaluate a run or an exported model: Rekognition summary, metrics, plots, report"),
    "export": ("edgelabels.export.command", "export a run to ONNX (optionally INT8) for the edge runtime"),
    "predict": ("edgelabels.serve.predict_command",
                "run an exported model on images, a watched folder or a video, stream or camera (no TensorFlow)"),
    "serve": ("edgelabels.service.command", "serve an exported model, or Rekognition Custom Labels (--projects DIR), behind a Rekognition-compatible endpoint"),
    "benchmark": ("edgelabels.benchmark.command", "compare a local model with a Rekognition model on the same test images"),
    "label": ("edgelabels.labeling.command", "send the images to look at to Label Studio with our answers, take "
              "people's corrections back as the next manifest, or serve suggestions as its ML backend"),
    "segment": ("edgelabels.serve.segment_command", "write lung masks and overlays with a U-Net run or its export"),
    "demo": ("edgelabels.demo", "synthetic lateral-flow cassettes -> train -> evaluate -> export -> predict"),
}

EPILOG = """\
Typical flow:
  edgelabels dataset inspect data/cassettes          # check a folder-per-label dataset
  edgelabels train configs/cassettes.yaml --out runs/cassettes
  edgelabels train data/cassettes --budget 30m        # or no config: every choice from the data
  edgelabels evaluate runs/cassettes                  # Rekognition-style summary + report
  edgelabels export runs/cassettes --int8             # ONNX for the edge
  edgelabels predict runs/cassettes/export photo.jpg  # DetectCustomLabels JSON per image
Run `edgelabels VERB --help` for each verb's options."""


VERBOSE_HELP = "show TensorFlow's C++ start-up logging (use it when TensorFlow itself fails to start)"

# A line as absl/glog print it: severity letter, date, time, thread id, file:line]. Before
# absl::InitializeLog the date reads 0000 and the seconds count from 1970:
# "I0000 00:00:1796163618.306037    4093 cudart_stub.cc:31] Could not find cuda drivers ..."
_CPP_LOG_LINE = re.compile(rb"([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]]*\] ")
_ABSL_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def quiet_tensorflow_start_up() -> None:
    """Silence TensorFlow's C++ and Python start-up logging in this process; a user's TF_CPP_MIN_LOG_LEVEL wins.

    TF_CPP_MIN_LOG_LEVEL=3 silences what TensorFlow logs once loaded (cpu_feature_guard, oneDNN,
    "failed call to cuInit", grappler's "Starting new session"); the "tensorflow" Python logger at
    ERROR silences tf.function retracing hints. Neither reaches what TensorFlow's shared libraries
    (two, each with its own absl) print from static initialisers while Python's import of tensorflow
    loads them: absl's "All log messages before absl::InitializeLog() ..." and cudart_stub's "Could
    not find cuda drivers". Until absl::InitializeLog is called absl writes every message to stderr
    whatever the level (abseil-cpp pull requests 1718 and 1957 would change that; neither is merged),
    and no environment variable reaches it. So the first import of tensorflow, and only that, runs
    with file descriptor 2 sent to a temporary file; afterwards the lines below TF_CPP_MIN_LOG_LEVEL
    are dropped and everything else (Python warnings, errors) is written back. Filtering the whole
    command's stderr instead would hold back its progress bars.
    """
    setting = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    level = int(setting) if setting.isdigit() else 0  # not a level: filter nothing
    if level and "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport)
                                                             for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport(level))


class _QuietTensorFlowImport:
    """A one-shot import hook: the first import of tensorflow runs with C-level stderr filtered."""

    def __init__(self, level: int):
        self.level = level
        self.loader = None
        self.searching = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self.searching:
            return None
        self.searching = True  # the search below asks the other finders, not this one again
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.searching = False
        if spec is not None and spec.loader is not None:
            self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        module.__spec__.loader = module.__loader__ = self.loader  # the real loader, for whoever inspects it
        with _stderr_without_cpp_logs_below(self.level):
            self.loader.exec_module(module)


@contextlib.contextmanager
def _stderr_without_cpp_logs_below(level: int):
    # A file, not a pipe read by a thread: nothing can block. The price: if TensorFlow aborts while
    # loading, what it printed is lost with the process (--verbose shows it).
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            os.write(2, b"".join(line for line in captured if not _below(line, level)))


def _below(line: bytes, level: int) -> bool:
    if line.startswith(_ABSL_PREAMBLE):
        return level > 1  # a WARNING
    match = _CPP_LOG_LINE.match(line)
    return match is not None and b"IWEF".index(match[1]) < level


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgelabels",
        description="Train, evaluate, export and serve custom image labels on your own hardware "
        "(a do-it-yourself Amazon Rekognition Custom Labels).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgelabels {__version__}")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, (module_name, help_text) in VERBS.items():
        sub = verbs.add_parser(verb, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        # Also after the verb; SUPPRESS keeps a --verbose given before it.
        sub.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
        module = importlib.import_module(module_name)  # every verb exists: a missing module is a bug, said loudly
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        quiet_tensorflow_start_up()  # command modules import nothing heavy: TensorFlow is not loaded yet
    try:
        code = args.handler(args)
    except UserError as exc:
        print(f"edgelabels: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgelabels: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
