"""Commands run after each generation, for the pipelines downstream.

``SORA_ON_SUCCESS`` / ``SORA_ON_FAILURE`` hold a command line, split like a shell would split
it (``shlex``) but never run by a shell: the prompt is passed as one argument and in the
environment, so a prompt full of ``$()``, ``;`` or quotes cannot run anything. A hook that
fails or overruns its timeout is logged and never fails the job.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass

from loguru import logger

# Secrets of the daemon's that a hook has no use for, and must not be able to leak.
SECRET_VARIABLES = frozenset({"OPENAI_API_KEY"})


@dataclass(frozen=True)
class Hook:
    command: str
    timeout: float

    def run(self, image: str, source: str, prompt: str, **extra: str) -> None:
        if not self.command:
            return
        argv = [*shlex.split(self.command), image, source, prompt]
        env = {
            **{k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES},
            "SORA_IMAGE": image,
            "SORA_INPUT": source,
            "SORA_PROMPT": prompt,
            **{f"SORA_{key.upper()}": value for key, value in extra.items()},
        }
        try:
            done = subprocess.run(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            logger.error("hook {} killed after {:g}s", argv[0], self.timeout)
            return
        except OSError as exc:
            logger.error("hook {} could not start: {}", argv[0], exc)
            return
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            logger.error("hook {} exited with {}: {}", argv[0], done.returncode, tail[0])
        else:
            logger.debug("hook {} done", argv[0])
