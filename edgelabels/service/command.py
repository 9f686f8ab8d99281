"""`edgelabels serve`: one exported model (`serve MODEL_DIR`), or the local Rekognition Custom Labels service
(`serve --projects DIR`): projects, datasets and model versions through Rekognition's API, trained here.

`serve MODEL_DIR` is serve/server_command.py's, unchanged. `serve --projects DIR` keeps everything in DIR (the
SQLite store, each version's run and export, images fetched from S3: service/context.py) and continues where it
stopped when restarted on the same DIR. It runs as ONE uvicorn worker process: the trainer and the started models
live in it. SIGTERM or Ctrl-C stop it cleanly: the trainer stops, its training child is killed, and the job is left
"running" so that the next start resumes it from its last completed epoch.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgelabels.errors import UserError
from edgelabels.serve import server_command

EPILOG = """\
examples:
  edgelabels serve runs/pneumonia/export --port 8080          # one exported model
  edgelabels serve --projects service-dir --port 8080         # the Rekognition Custom Labels lifecycle
  AWS_ENDPOINT_URL_S3=http://127.0.0.1:9000 edgelabels serve --projects service-dir   # MinIO or any S3 store
  aws rekognition describe-projects --endpoint-url http://127.0.0.1:8080 --region us-east-1

--projects runs one worker process: its trainer and its started models live in it (--workers is MODEL_DIR's).
"""

PROJECT_OPTIONS = ("budget", "overrides", "max_jobs")


def add_arguments(parser) -> None:
    server_command.add_arguments(parser, model_dir_required=False)
    parser.add_argument("--projects", metavar="DIR", type=Path,
                        help="run the local Rekognition Custom Labels service, keeping its state in DIR (created "
                             "if missing; a restart on the same DIR continues where it stopped)")
    parser.add_argument("--budget", metavar="DURATION",
                        help="--projects: each training's wall-clock budget, e.g. 30m, 1h30m, or `none` for the "
                             "recipe's own schedule (default 30m)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="--projects: a config key given to every training, e.g. --set train.epochs=3 "
                             "(repeatable; Rekognition's API carries no hyperparameters)")
    parser.add_argument("--max-jobs", type=int, default=None, metavar="N",
                        help="--projects: trainings run at once (default 1; the others queue)")
    parser.epilog = EPILOG


def check_project_arguments(args) -> None:
    """What `serve --projects` refuses beyond the one-export checks; budget and --set keys fail here, as one line,
    not in every training."""
    from edgelabels.config import load_config, parse_budget

    if args.model_dir:
        raise UserError(f"MODEL_DIR {args.model_dir} and --projects {args.projects}: serve one or the other")
    if args.workers != 1:
        raise UserError(f"--workers {args.workers}: --projects runs one worker process (its trainer and its "
                        "started models live in it)")
    if args.project_version_arn:
        raise UserError("--project-version-arn is MODEL_DIR's: --projects makes an ARN for each version")
    if args.max_jobs is not None and args.max_jobs < 1:
        raise UserError(f"--max-jobs {args.max_jobs}: must be at least 1")
    if args.budget and args.budget.strip().lower() != "none":
        parse_budget(args.budget)
    # A placeholder source: the keys and their values are checked, not the data (each version brings its own).
    load_config(None, ["data.source=dataset.manifest", *args.overrides])
    if args.projects.exists() and not args.projects.is_dir():
        raise UserError(f"--projects {args.projects}: not a folder")


def run(args) -> int:
    if args.projects is None:
        given = [f"--{name.replace('_', '-')}" for name in PROJECT_OPTIONS
                 if getattr(args, name) not in (None, [])]
        if given:
            raise UserError(f"{', '.join(given)}: only with --projects DIR")
        if not args.model_dir:
            raise UserError("give MODEL_DIR (serve one exported model) or --projects DIR (the Rekognition service)")
        return server_command.run(args)
    return run_projects(args)


def run_projects(args) -> int:
    server_command.check_arguments(args)
    check_project_arguments(args)
    server_command.check_port_free(args.host, args.port)
    server_command.require_serving_packages()
    import uvicorn

    from edgelabels.service.app import create_service_app
    from edgelabels.service.context import ServiceContext, ServiceSettings, lock_directory
    from edgelabels.service.s3 import S3Objects
    from edgelabels.service.store import Store

    auth = server_command.auth_line(args)
    directory = args.projects.resolve()
    lock = lock_directory(directory)  # noqa: F841  (held until this process ends)
    s3 = S3Objects.from_environment(args.s3_root)
    budget = None if args.budget and args.budget.strip().lower() == "none" else (args.budget or "30m")
    settings = ServiceSettings(budget=budget, overrides=tuple(args.overrides), max_jobs=args.max_jobs or 1,
                               precision=args.precision, threads=args.threads)
    ctx = ServiceContext(directory, Store(directory, region=args.region), s3, settings)
    try:
        with server_command.stopped_by_sigterm():
            app = create_service_app(ctx, max_concurrency=args.max_concurrency,
                                     credentials=str(Path(args.credentials).resolve()) if args.credentials else None,
                                     region=args.region)
            url = server_command.endpoint_url(args)
            print(f"edgelabels serve: the Rekognition Custom Labels service over {directory}")
            print(f"  endpoint_url        {url}")
            print(f"  projects            {directory}")
            print(f"  region              {args.region}")
            print(f"  s3                  {s3.root or s3.client.meta.endpoint_url}")
            print(f"  auth                {auth}"
                  + ("" if args.credentials else " (clients still sign: any AWS_ACCESS_KEY_ID and secret will do)"))
            print(f"  trainings           {settings.max_jobs} at once, budget {budget or 'none'}"
                  + (f", --set {' '.join(settings.overrides)}" if settings.overrides else ""))
            print(f"  console             {url}{app.state.console.state.auth.start_path}   (works once)")
            print(f"  try                 aws rekognition describe-projects --endpoint-url {url} "
                  f"--region {args.region}")
            sys.stdout.flush()
            uvicorn.run(app, **server_command.uvicorn_options(args))
    finally:
        ctx.close()
    return 0
