"""`edgelabels VERB ...`: one verb per job. Parses, calls the library, prints.

Each verb lives in a command module exposing `add_arguments(parser)` and `run(args) -> int | None`.
Command modules import nothing heavy at module level, so `edgelabels predict --help` never loads
TensorFlow. Errors the user can fix (UserError) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edgelabels import __version__
from edgelabels.errors import UserError

# verb -> (command module, one-line help)
VERBS = {
    "dataset": ("edgelabels.data.command", "inspect, validate and augment a labelled image dataset"),
    "train": ("edgelabels.train.command", "train a classifier (or U-Net) by transfer learning from a YAML config"),
    "evaluate": ("edgelabels.evaluate.command", "evaluate a run or an exported model: Rekognition summary, metrics, plots, report"),
    "export": ("edgelabels.export.command", "export a run to ONNX (optionally INT8) for the edge runtime"),
    "predict": ("edgelabels.serve.predict_command", "run an exported model on images or a watched folder (no TensorFlow)"),
    "serve": ("edgelabels.serve.server_command", "serve an exported model behind a Rekognition-compatible endpoint"),
    "benchmark": ("edgelabels.benchmark.command", "compare a local model with a Rekognition model on the same test images"),
    "segment": ("edgelabels.serve.segment_command", "write lung masks and overlays with a U-Net run or its export"),
    "demo": ("edgelabels.demo", "synthetic lateral-flow cassettes -> train -> evaluate -> export -> predict"),
}

EPILOG = """\
Typical flow:
  edgelabels dataset inspect data/cassettes          # check a folder-per-label dataset
  edgelabels train configs/cassettes.yaml --out runs/cassettes
  edgelabels evaluate runs/cassettes                  # Rekognition-style summary + report
  edgelabels export runs/cassettes --int8             # ONNX for the edge
  edgelabels predict runs/cassettes/export photo.jpg  # DetectCustomLabels JSON per image
Run `edgelabels VERB --help` for each verb's options."""


def _not_available(verb: str):
    def run(args):
        raise UserError(f"'edgelabels {verb}' is not yet available in this version")

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgelabels",
        description="Train, evaluate, export and serve custom image labels on your own hardware "
        "(a do-it-yourself Amazon Rekognition Custom Labels).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgelabels {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, (module_name, help_text) in VERBS.items():
        sub = verbs.add_parser(verb, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            sub.set_defaults(handler=_not_available(verb))
            continue
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
