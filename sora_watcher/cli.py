"""``sora-watcher`` / ``python watcher.py``: run, once, generate.

``cli(*args)`` returns the exit status instead of exiting, so tests can call it directly.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from dotenv import load_dotenv
from loguru import logger

from sora_driver.backend import ImageBackend
from sora_driver.errors import SESSION_MISSING_MESSAGE, Interrupted, SessionMissing
from sora_driver.instant import InstantBackend
from sora_driver.login import login
from sora_driver.web import DriverConfig, SoraWebDriver
from sora_watcher import logs
from sora_watcher.config import ConfigError, Settings, resolve
from sora_watcher.daemon import Daemon
from sora_watcher.folders import FolderLocked
from sora_watcher.inputs import InputError, read_prompts
from sora_watcher.status import status

EXIT_OK, EXIT_FAILED, EXIT_SESSION, EXIT_LOCKED, EXIT_USAGE = 0, 1, 2, 3, 64


def make_backend(settings: Settings, stop: threading.Event) -> ImageBackend:
    if settings.backend == "instant":
        return InstantBackend()
    driver = SoraWebDriver(
        DriverConfig(
            base_url=settings.base_url,
            session_file=settings.session_file,
            timeout=settings.timeout,
            page_timeout=settings.page_timeout,
            headless=settings.headless,
            browser_path=settings.browser_path,
            selectors_file=settings.selectors,
            debug=settings.debug,
            artifacts_dir=settings.debug_dir,
            recycle_after=settings.recycle_after,
        ),
        stop,
    )
    try:
        driver.open()
    except BaseException:
        driver.close()
        raise
    return driver


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    flag = common.add_argument
    flag("--home", help="folder the other folders are relative to (SORA_HOME)")
    flag("--inbox", help="folder watched for prompt files (SORA_INBOX_DIR)")
    flag("--images", help="folder for the images (SORA_IMAGES_DIR)")
    flag("--processed", help="SORA_PROCESSED_DIR")
    flag("--failed", help="SORA_FAILED_DIR")
    flag("--logs", help="SORA_LOGS_DIR")
    flag("--session-file", dest="session_file", help="saved browser session (SORA_SESSION_FILE)")
    flag("--base-url", dest="base_url", help="the Sora web app (SORA_BASE_URL)")
    flag("--timeout", help="seconds one generation may take (SORA_TIMEOUT)")
    flag("--max-retries", dest="max_retries", help="tries after a transient error")
    flag("--browser-path", dest="browser_path", help="Chromium to use (SORA_BROWSER_PATH)")
    flag("--selectors", help="selector profile overriding the built-in one (SORA_SELECTORS)")
    flag("--headed", dest="headless", action="store_const", const="false", help="show the browser")
    flag("--debug", action="store_const", const="true", help="log each step, screenshots")
    flag("--env-file", dest="env_file", default=".env", help="dotenv file to load (.env)")

    top = argparse.ArgumentParser(prog="sora-watcher", parents=[common], description=__doc__)
    commands = top.add_subparsers(dest="command")
    commands.add_parser("run", parents=[common], help="the daemon, in the foreground (default)")
    commands.add_parser("once", parents=[common], help="process the inbox once, then exit")
    generate = commands.add_parser(
        "generate", parents=[common], help="make the image(s) of one prompt file, then exit"
    )
    generate.add_argument("--prompt-file", dest="prompt_file", default="prompt.txt")
    commands.add_parser(
        "login", parents=[common], help="log in by hand in a browser window; save session.json"
    )
    status_command = commands.add_parser(
        "status", parents=[common], help="folders, queue state, session; non-zero if unhealthy"
    )
    status_command.add_argument(
        "--offline", action="store_true", help="do not ask the site whether the session holds"
    )
    return top


def install_signal_handlers(stop: threading.Event) -> None:
    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()  # only a flag: the worker notices it within half a second

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)


def cli(*args: str) -> int:
    options = parser().parse_args(args)
    load_dotenv(options.env_file, override=False)
    try:
        settings = resolve(vars(options))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if options.command == "status":
        return status(settings, options.offline)
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
        return login(settings.base_url, settings.session_file, settings.browser_path)
    try:
        daemon = Daemon(settings, lambda: make_backend(settings, stop), stop, once=True)
        if options.command == "generate":
            return generate(daemon, Path(options.prompt_file))
        daemon.once = options.command == "once"
        daemon.run()
    except SessionMissing:
        return session_missing()
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


def session_missing() -> int:
    logs.session_missing(SESSION_MISSING_MESSAGE)
    return EXIT_SESSION


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
    daemon.start_backend()
    try:
        made_all = daemon.generate(path, prompts)
    except Interrupted:
        return EXIT_FAILED
    finally:
        daemon.close_backend()
    return EXIT_OK if made_all else EXIT_FAILED


def main() -> None:
    sys.exit(cli(*sys.argv[1:]))
