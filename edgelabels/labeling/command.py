"""`edgelabels label export|import|backend`: people in the loop, in the Label Studio they already run.

export: a Label Studio project filled with the images to look at (suspects, then the review queue, else the
whole SOURCE), our answer as each one's pre-annotation. import: their answers back as the dataset's next version
(a Ground Truth manifest) and a CSV of what they changed. backend: an exported model's suggestions for Label
Studio (its ML backend protocol), with the edge runtime alone.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edgelabels.errors import UserError

TOKEN = "LABEL_STUDIO_API_KEY"
DOCUMENT_ROOT = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"

EXAMPLES = f"""\
examples:
  export {TOKEN}=...                 # Label Studio: Account & Settings > Personal Access Token
  export {DOCUMENT_ROOT}=/srv/images   # as the Label Studio server has it; SOURCE lies below it
  edgelabels label export /srv/images/cassettes/user-readings.manifest --label-studio http://localhost:8080 \\
      --suspects audit/ --review runs/cassettes/evaluation --limit 200
  edgelabels label import /srv/images/cassettes/user-readings.manifest --label-studio http://localhost:8080 \\
      --project 3 --out /srv/images/cassettes/next.manifest
  edgelabels label import SOURCE --from-json project-3-export.json --out next.manifest
  edgelabels label backend runs/cassettes/export --port 9090   # then in Label Studio: Settings > Model
a backend on the Label Studio host itself (loopback or a private address) needs Label Studio started with
ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false (its guards against requests to local addresses)"""


def add_arguments(parser) -> None:
    parser.epilog = EXAMPLES
    actions = parser.add_subparsers(dest="label_action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export", help="create or fill a Label Studio project with the images to look at",
        description=_wrapped("Create (or fill, never twice the same image) a Label Studio project over its REST API: the "
                    "audit's suspects first, in rank order, then the evaluation's review queue, else every image of "
                    "SOURCE. Each task shows our answer as a pre-annotation (the suggested label; boxes as "
                    "rectangles), why it was picked, and the label it has now. Images are shown from where they lie "
                    "(a local-files storage below the document root), never uploaded. Prints the project's URL."),
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("source", type=Path, metavar="SOURCE",
                        help="the dataset people correct: a folder per label or a Ground Truth manifest (a label, "
                             "boxes, or both per line), e.g. data/cassettes/user-readings.manifest")
    _server(export, required=True)
    export.add_argument("--project", metavar="TITLE_OR_ID",
                        help="project to fill: an id, or a title (created when missing; default SOURCE's name)")
    export.add_argument("--suspects", type=Path, metavar="AUDIT_DIR",
                        help="an `edgelabels dataset audit` folder: its suspects.csv, worst first, e.g. audit/")
    export.add_argument("--review", type=Path, metavar="EVALUATION_DIR",
                        help="an evaluation folder: its review/queue.csv (the images below the review threshold)")
    export.add_argument("--limit", type=int, metavar="N",
                        help="at most N images: the budget of corrections people have time for, e.g. 200")
    export.add_argument("--document-root", type=Path, metavar="DIR",
                        help=f"Label Studio's local-files root (default ${DOCUMENT_ROOT})")
    back = actions.add_parser(
        "import", help="write the dataset's next version from the answers people gave",
        description=_wrapped("Read the finished annotations (over the API, or Label Studio's JSON export file) and write "
                    "the dataset's next version as a Ground Truth manifest: every image of SOURCE, with the "
                    "person's label and boxes where a task was answered, as given elsewhere; plus a CSV of what "
                    "people changed (image, what, before, after). An unanswered task changes nothing; a box left "
                    "where it was keeps its exact pixels."),
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    back.add_argument("source", type=Path, metavar="SOURCE", help="the folder or manifest that was exported")
    _server(back, required=False)
    where = back.add_mutually_exclusive_group(required=True)
    where.add_argument("--project", type=int, metavar="ID", help="read the project over the API")
    where.add_argument("--from-json", type=Path, metavar="EXPORT.json", help="Label Studio's JSON export file")
    back.add_argument("--out", type=Path, required=True, metavar="NEXT.manifest", help="the next version")
    back.add_argument("--diff", type=Path, metavar="CSV", help="what people changed (default NEXT.changes.csv)")
    backend = actions.add_parser(
        "backend", help="serve an export's suggestions as a Label Studio ML backend",
        description=_wrapped("Serve an exported model (edge runtime, no TensorFlow) behind Label Studio's ML backend "
                    "protocol (GET /health, POST /setup, POST /predict), so people labelling new images see its "
                    "suggestions: in Label Studio, Settings > Model > Connect Model, this address."),
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    backend.add_argument("export_dir", type=Path, metavar="EXPORT_DIR", help="an export folder (model.onnx)")
    backend.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    backend.add_argument("--port", type=int, default=9090, help="port (default 9090, Label Studio's)")
    backend.add_argument("--document-root", type=Path, metavar="DIR",
                         help=f"where /data/local-files/ URLs point (default ${DOCUMENT_ROOT})")


def _wrapped(text: str) -> str:
    """A description filled to the terminal's usual width (the raw formatter keeps the examples' lines as written)."""
    import textwrap

    return textwrap.fill(text, 100)


def _server(parser, required: bool) -> None:
    parser.add_argument("--label-studio", metavar="URL", required=required, help="Label Studio's address")
    parser.add_argument("--token", help=f"Personal Access Token (default ${TOKEN})")


def _client(args):
    from edgelabels.labeling.studio import LabelStudioClient

    token = args.token or os.environ.get(TOKEN)
    if not token:
        raise UserError(f"no Label Studio token: pass --token or set {TOKEN} (Account & Settings > "
                        "Personal Access Token)")
    return LabelStudioClient(args.label_studio, token)


def _document_root(args) -> Path:
    root = args.document_root or os.environ.get(DOCUMENT_ROOT)
    if not root:
        raise UserError(f"Label Studio shows local files only from below its document root: pass --document-root "
                        f"or set {DOCUMENT_ROOT} as the server has it")
    return Path(root)


def run(args) -> int:
    if args.label_action == "export":
        from edgelabels.labeling.export import export_project, read_source

        if args.limit is not None and args.limit < 1:
            raise UserError(f"--limit must be at least 1, not {args.limit}")
        root = _document_root(args)
        done = export_project(_client(args), read_source(args.source), document_root=root, project=args.project,
                              suspects=args.suspects, review=args.review, limit=args.limit)
        print(f"{done['added']} tasks added, {done['already']} already there: {done['url']}")
    elif args.label_action == "import":
        from edgelabels.labeling.export import read_source
        from edgelabels.labeling.importing import read_export, summary_line, write_next_version

        if args.project is not None and not args.label_studio:
            raise UserError("--project needs --label-studio URL (or read a JSON export with --from-json)")
        source = read_source(args.source)
        if args.from_json:
            tasks = read_export(args.from_json)
        else:
            client = _client(args)
            client.project(args.project)  # a missing project is said as such, not as an empty one
            tasks = client.tasks(args.project)
        print(summary_line(write_next_version(source, tasks, args.out, args.diff)))
    else:
        from edgelabels.labeling.backend import serve

        serve(args.export_dir, host=args.host, port=args.port,
              document_root=args.document_root or os.environ.get(DOCUMENT_ROOT))
    return 0
