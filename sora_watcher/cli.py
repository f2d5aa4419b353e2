"""Turn prompt files dropped into a folder into images.

Drop a .txt (one prompt per line), .csv, .json job or theme_<user>.json natal chart into
inbox/: each image lands in images/ with its prompt, and the file moves to processed/ (or
failed/, with the reason beside it). Settings come from flags, the environment and .env
(see .env.example); `sora-watcher status` says whether all is well.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType

from dotenv import dotenv_values, load_dotenv
from loguru import logger

from sora_watcher import backends, logs
from sora_watcher.backends.base import ImageBackend
from sora_watcher.config import OPTIONS, ConfigError, Settings, resolve, sections, worker_folders
from sora_watcher.daemon import Daemon, RunMode
from sora_watcher.errors import CredentialsMissing, Interrupted
from sora_watcher.folders import FolderLocked, JobState
from sora_watcher.inputs import InputError, read_prompts
from sora_watcher.inputs.chart import load_template
from sora_watcher.options import add_flags
from sora_watcher.records import Records
from sora_watcher.service_settings import ServiceSettings
from sora_watcher.service_settings import from_settings as service_settings
from sora_watcher.status import status
from sora_watcher.submit import SubmitError, retry, retry_files

EXIT_OK, EXIT_FAILED, EXIT_SESSION, EXIT_LOCKED, EXIT_USAGE = 0, 1, 2, 3, 64


def environment(env_file: Path) -> Callable[[], Mapping[str, str]]:
    """The process's environment over the dotenv file, the file read afresh at each call: a
    daemon waiting for its API key, or whose key was refused, sees the new one as soon as it
    is written into .env. A variable whose value at start came from the file (systemd's
    EnvironmentFile= loads the same .env) follows the file."""

    def from_file() -> dict[str, str]:
        return {k: v for k, v in dotenv_values(env_file).items() if v is not None}

    at_start = from_file()
    own = {k: v for k, v in os.environ.items() if at_start.get(k) != v}

    def read() -> Mapping[str, str]:
        return {**from_file(), **own}

    return read


def make_backend(
    settings: Settings, environ: Callable[[], Mapping[str, str]], stop: threading.Event
) -> ImageBackend:
    return backends.load(settings.backend).create(settings, environ, stop)


def flags(default: object = None) -> argparse.ArgumentParser:
    """Every setting's flag, the backends' too (chosen or not), as a parent parser."""
    common = argparse.ArgumentParser(add_help=False)
    add_flags(common, OPTIONS, default=default)
    for name, section in sections().items():
        title = "the HTTP service, webhooks, alerts" if name == "service" else f"the {name} backend"
        add_flags(common, section, title, default)
    return common


def parser() -> argparse.ArgumentParser:
    # The flags work before the command and after it: a command's own copy of a flag that
    # is not given must not hide the one given before the command.
    common = flags(default=argparse.SUPPRESS)

    top = argparse.ArgumentParser(
        prog="sora-watcher",
        parents=[flags()],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the paragraphs
    )
    commands = top.add_subparsers(dest="command")
    commands.add_parser("run", parents=[common], help="the daemon, in the foreground (default)")
    commands.add_parser("once", parents=[common], help="process the inbox once, then exit")
    generate = commands.add_parser(
        "generate", parents=[common], help="make the image(s) of one prompt file, then exit"
    )
    generate.add_argument("--prompt-file", dest="prompt_file", default="prompt.txt")
    commands.add_parser(
        "login", parents=[common], help="web backends: log in by hand in a browser window"
    )
    status_command = commands.add_parser(
        "status", parents=[common], help="folders, queue state, session; non-zero if unhealthy"
    )
    status_command.add_argument(
        "--offline", action="store_true", help="do not ask the backend whether it accepts us"
    )
    retry = commands.add_parser(
        "retry", parents=[common], help="send failed jobs back into the inbox"
    )
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("name", nargs="?", help="a job's id, or a file's name in failed/")
    which.add_argument("--all", action="store_true", help="every file in failed/")
    return top


def install_signal_handlers(stop: threading.Event) -> None:
    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()  # only a flag: the worker notices it within half a second

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)


def cli(*args: str) -> int:
    """The command line; returns the exit status instead of exiting, so tests can call it."""
    options = parser().parse_args(args)
    env_file = Path(options.env_file or os.environ.get("SORA_ENV_FILE") or ".env")
    environ = environment(env_file)
    load_dotenv(env_file, override=False)
    try:
        settings = resolve(vars(options))
        load_template(settings.prompt_template)  # the chart plug-in's, checked with the rest
        capabilities = backends.load(settings.backend).capabilities(settings, environ())
        service = service_settings(settings, environ())
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if options.command == "status":
        return status(settings, environ(), options.offline)
    if options.command == "retry":
        return retry_failed(settings, options.name, options.all)
    try:
        log_file = logs.setup(
            settings.logs, settings.debug, settings.log_rotation, settings.log_retention
        )
    except ValueError as exc:  # loguru's words for a rotation or retention it cannot read
        print(f"configuration error: SORA_LOG_ROTATION/SORA_LOG_RETENTION: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logger.info("sora-watcher {} started; log file {}", options.command or "run", log_file)
    stop = threading.Event()
    install_signal_handlers(stop)
    if options.command == "login":
        return backends.load(settings.backend).login(settings)
    try:
        daemon = Daemon(
            settings,
            lambda: make_backend(settings, environ, stop),
            stop,
            capabilities,
            RunMode(options.command or "run"),
            service,
        )
        if options.command == "generate":
            return generate(daemon, Path(options.prompt_file))
        run(daemon, service)
    except CredentialsMissing as exc:
        logs.credentials_missing(exc.detail)
        return EXIT_SESSION
    except Interrupted:  # stopped while it waited (for credentials, a pause): a clean stop
        return EXIT_OK
    except ConfigError as exc:
        logger.error("configuration error: {}", exc)
        return EXIT_USAGE
    except FolderLocked as exc:
        logger.error("{}", exc)
        return EXIT_LOCKED
    except Exception as exc:  # nothing crashes silently: say what and where, then exit
        logger.exception("sora-watcher stopped on an unexpected error: {}", exc)
        return EXIT_FAILED
    if options.command == "once" and daemon.unfinished:
        logger.error("{} input(s) did not end in processed/", daemon.unfinished)
        return EXIT_FAILED
    return EXIT_OK


def run(daemon: Daemon, service: ServiceSettings) -> None:
    """The daemon, with the HTTP service beside it when it watches (``run``)."""
    if daemon.mode is not RunMode.RUN or service.http is None:
        daemon.run()
        return
    from sora_watcher.server.context import Context  # the web libraries load only here
    from sora_watcher.server.runner import HttpService

    daemon.run(beside=[HttpService(Context(daemon.settings, service, daemon.rules), service.http)])


def retry_failed(settings: Settings, name: str | None, every: bool) -> int:
    """``sora-watcher retry NAME|--all``: failed jobs back into the inbox."""
    folders = worker_folders(settings)
    records = Records(settings.records)
    folders.inbox.mkdir(parents=True, exist_ok=True)
    try:
        if every:
            paths = folders.waiting(JobState.FAILED) if folders.failed.is_dir() else []
        elif name is not None and (record := records.load(name)) is not None:
            print(f"{name} -> {retry(record, records, folders).name}")
            return EXIT_OK
        else:
            paths = [folders.failed / str(name)]
            if not os.path.lexists(paths[0]):
                print(f"{name}: no such job id, nor file in {folders.failed}", file=sys.stderr)
                return EXIT_FAILED
        for path, moved in zip(paths, retry_files(paths, records, folders), strict=True):
            print(f"{path.name} -> {moved.name}")
    except SubmitError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def generate(daemon: Daemon, prompt_file: Path) -> int:
    """The single-shot brick: the prompts of one file to images, without moving the file."""
    home = daemon.settings.home
    path = prompt_file if prompt_file.is_absolute() else home / prompt_file
    try:
        prompts = read_prompts(path, daemon.rules)
    except FileNotFoundError:
        logger.error("{} does not exist: write one prompt per line in it", path)
        return EXIT_FAILED
    except InputError as exc:
        logger.error("{}: {}", path.name, exc)
        return EXIT_FAILED
    try:
        made_all = daemon.generate(path, prompts)
    except Interrupted:
        return EXIT_FAILED
    return EXIT_OK if made_all else EXIT_FAILED


def main() -> None:
    sys.exit(cli(*sys.argv[1:]))
