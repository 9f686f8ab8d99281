"""`edgelabels serve MODEL_DIR`: an exported model behind a Rekognition-compatible endpoint.

Existing boto3 code switches by changing only `endpoint_url`. Parses the options, refuses unsafe
combinations (a non-loopback address without signature checks), writes the settings and the
shared model-status file into a run-state folder, prints the ARN to call, then runs uvicorn.

Connection bounds given to uvicorn (per worker; server.py bounds what each request may hold):
- `limit_concurrency`: open connections plus requests being handled; past it uvicorn answers 503
  (which boto3 retries) instead of failing to accept once the process runs out of file
  descriptors. It is set from the descriptor limit (the soft limit raised to the hard one, less
  FD_RESERVE for the model, logs and settings files), so it sits far above the clients a worker
  serves and the stalled connections it should shrug off: a stalled body is dropped after 10 s
  without a chunk, but uvicorn has no timeout for a connection that never completes its request
  headers. Thousands of such sockets still reach the limit and get every caller 503 until they
  close: on a network you do not trust, put a reverse proxy with a header timeout in front.
- `timeout_keep_alive` (KEEP_ALIVE_S): an idle connection between two requests is closed after
  it, so idle clients do not fill `limit_concurrency`; boto3 reopens closed pooled connections itself.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from edgelabels.errors import UserError


def add_arguments(parser, model_dir_required: bool = True) -> None:
    """The options of `serve MODEL_DIR`; `serve --projects DIR` (service/command.py) adds its own to the same set."""
    parser.add_argument("model_dir", metavar="MODEL_DIR", nargs=None if model_dir_required else "?",
                        help="exported model folder (RUN/export/)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; any other needs --credentials or --no-auth)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    parser.add_argument("--workers", type=int, default=1,
                        help="uvicorn worker processes, each with its own onnxruntime session (default 1; "
                             "MODEL_DIR only)")
    parser.add_argument("--project-version-arn", metavar="ARN",
                        help="ARN the endpoint answers to, so existing code keeps its ARN "
                             "(default: one derived from the model folder, printed at start-up; MODEL_DIR only)")
    parser.add_argument("--region", default="us-east-1",
                        help="region written into the ARNs, and the one region signatures may name (default "
                             "us-east-1)")
    parser.add_argument("--credentials", metavar="FILE",
                        help="INI file in the layout of ~/.aws/credentials; every request's SigV4 signature "
                             "is verified against its keys")
    parser.add_argument("--no-auth", action="store_true",
                        help="allow a non-loopback --host without --credentials (anyone who can reach it can call it)")
    parser.add_argument("--max-concurrency", type=int, default=16, metavar="N",
                        help="DetectCustomLabels requests in flight per worker before the server sheds load with "
                             "ProvisionedThroughputExceededException, which boto3 retries (default 16)")
    parser.add_argument("--tls-cert", metavar="FILE", help="TLS certificate (PEM), with --tls-key")
    parser.add_argument("--tls-key", metavar="FILE", help="TLS private key (PEM), with --tls-cert")
    parser.add_argument("--s3-root", metavar="DIR",
                        help="S3 as a folder: s3://BUCKET/KEY is DIR/BUCKET/KEY (MODEL_DIR: Image.S3Object is refused "
                             "without it; --projects: without it, S3 is boto3's standard configuration)")
    parser.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                        help="model file: auto = model.int8.onnx when present (default auto)")
    parser.add_argument("--threads", type=int, default=1,
                        help="onnxruntime intra-op threads per request (default 1: concurrent requests already "
                             "run in parallel, and more threads per request then only contend for the cores)")
    parser.add_argument("--no-access-log", action="store_true", help="do not log one line per request")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def derived_arn(model_dir: Path, model_file: Path, region: str) -> tuple[str, float]:
    """A stable ARN from the run's name and the model file's time: the same export keeps the same ARN."""
    from edgelabels.artifacts import RunDir

    folder = model_dir.resolve()
    name = folder.parent.name if folder.name == RunDir.EXPORT else folder.name
    name = re.sub(r"[^A-Za-z0-9_.\-]", "-", name)[:200].strip("-.") or "model"
    created = model_file.stat().st_mtime
    stamp = datetime.datetime.fromtimestamp(created, datetime.timezone.utc).strftime("%Y-%m-%dT%H.%M.%S")
    number = int(created * 1000)
    return f"arn:aws:rekognition:{region}:000000000000:project/{name}/version/{name}.{stamp}/{number}", created


def check_arguments(args) -> None:
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port}: must be 1 to 65535")
    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: must be at least 1")
    if args.threads < 1:
        raise UserError(f"--threads {args.threads}: must be at least 1")
    if args.max_concurrency < 1:
        raise UserError(f"--max-concurrency {args.max_concurrency}: must be at least 1")
    if args.credentials and args.no_auth:
        raise UserError("--credentials and --no-auth contradict each other: choose one")
    if not is_loopback(args.host) and not args.credentials and not args.no_auth:
        raise UserError(f"--host {args.host} is reachable from other machines: pass --credentials FILE "
                        "(SigV4-signed requests only) or, knowingly, --no-auth")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UserError("--tls-cert and --tls-key go together")
    for option, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path and not Path(path).is_file():
            raise UserError(f"{path}: no such file ({option})")
    if args.s3_root and not Path(args.s3_root).is_dir():
        raise UserError(f"{args.s3_root}: no such folder (--s3-root)")


def check_port_free(host: str, port: int) -> None:
    """Refuse a taken port as one line before anything is printed (uvicorn would log and exit 3)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None


SHUTDOWN_GRACE_S = 10
KEEP_ALIVE_S = 5
FD_RESERVE = 128  # descriptors kept for the model, logs, settings and the state file


def connection_limit(max_concurrency: int) -> int | None:
    """Connections one worker accepts: what its file descriptors allow (the soft limit raised to the hard one)."""
    try:
        import resource
    except ImportError:  # not on POSIX: uvicorn's own default (no limit)
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard if hard != resource.RLIM_INFINITY else 65536, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    soft = 65536 if soft == resource.RLIM_INFINITY else soft
    return max(2 * max_concurrency, soft - FD_RESERVE)


class _Terminated(Exception):
    """SIGTERM after uvicorn's graceful shutdown (uvicorn re-raises the signal it caught)."""


def _terminated(signum, frame):
    raise _Terminated()


@contextlib.contextmanager
def stopped_by_sigterm():
    """SIGTERM ends the block as a clean stop: the `finally` clauses inside run (without this, uvicorn's re-raised
    SIGTERM would kill the process before they do)."""
    previous_handler = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    except _Terminated:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def uvicorn_options(args) -> dict:
    """uvicorn.run's options from the command line (the module docstring says why these bounds)."""
    # A client holding a connection open must not keep a stopping server alive for ever.
    return dict(host=args.host, port=args.port, access_log=not args.no_access_log, log_level="info",
                ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key, server_header=False,
                timeout_graceful_shutdown=SHUTDOWN_GRACE_S, timeout_keep_alive=KEEP_ALIVE_S,
                limit_concurrency=connection_limit(args.max_concurrency))


def endpoint_url(args) -> str:
    host = f"[{args.host}]" if ":" in args.host else args.host
    return f"{'https' if args.tls_cert else 'http'}://{host}:{args.port}"


def auth_line(args) -> str:
    """How requests are authenticated, for the start-up lines (reads the credentials file: a bad one fails here)."""
    if not args.credentials:
        return "none"
    from edgelabels.serve.sigv4 import read_credentials

    return f"SigV4, {len(read_credentials(args.credentials))} key(s) from {args.credentials}"


def require_serving_packages() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UserError(f"edgelabels serve needs {exc.name}: pip install 'edgelabels[serve]'") from None


def run(args) -> int:
    check_arguments(args)
    check_port_free(args.host, args.port)
    require_serving_packages()
    import uvicorn

    from edgelabels.runtime.answers import open_edge_model
    from edgelabels.serve.server import (SETTINGS_ENV, VERSION_ARN, ModelState, ServeSettings, create_app,
                                         project_arn_prefix)

    auth = auth_line(args)  # fail here, not in every worker
    # Loading it here reports a bad model folder as one line; with one worker this session serves.
    predictor = open_edge_model(args.model_dir, precision=args.precision, threads=args.threads)
    arn, created = derived_arn(Path(args.model_dir), predictor.model_path, args.region)
    if args.project_version_arn:
        arn = args.project_version_arn
        if not VERSION_ARN.match(arn):
            raise UserError(f"--project-version-arn {arn!r}: not of the form "
                            "arn:aws:rekognition:REGION:ACCOUNT:project/NAME/version/VERSION/NUMBER")

    state_dir = Path(tempfile.mkdtemp(prefix="edgelabels-serve-"))
    try:
        with stopped_by_sigterm():
            settings = ServeSettings(
                model_dir=str(Path(args.model_dir).resolve()), project_version_arn=arn, creation_timestamp=created,
                state_file=str(state_dir / "status.json"), max_concurrency=args.max_concurrency,
                credentials=str(Path(args.credentials).resolve()) if args.credentials else None,
                s3_root=str(Path(args.s3_root).resolve()) if args.s3_root else None,
                precision=args.precision, threads=args.threads)
            ModelState(settings.state_file).write("RUNNING")  # a served model starts RUNNING
            settings_file = settings.write(state_dir / "settings.json")
            os.environ[SETTINGS_ENV] = str(settings_file)  # inherited by uvicorn's worker processes

            print(f"edgelabels serve: {predictor.model_path} ({len(predictor.labels)} labels, {predictor.precision})")
            print(f"  endpoint_url        {endpoint_url(args)}")
            print(f"  ProjectVersionArn   {arn}")
            print(f"  ProjectArn          {project_arn_prefix(arn)}{arn.rsplit('/', 1)[1]}")
            print(f"  auth                {auth}")
            print(f"  workers             {args.workers}, max {args.max_concurrency} requests in flight each")
            sys.stdout.flush()

            if args.workers == 1:
                uvicorn.run(create_app(settings, predictor), **uvicorn_options(args))
            else:
                del predictor  # each worker process loads its own session
                uvicorn.run("edgelabels.serve.server:app_from_environment", factory=True, workers=args.workers,
                            **uvicorn_options(args))
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    return 0
