"""`--env-file`: a file of settings read as a shell reads them, never overriding the environment.

python-dotenv parses it: `export KEY=value`, single and double quotes (escapes in double quotes,
values over several lines), `#` comments on their own line or after a value. Values are taken as
written: `${VAR}` is not expanded (systemd's EnvironmentFile= does not either, so one file means
the same to both, and a secret with a `$` in it is kept whole). A line that is not KEY=value stops
start-up naming the file and the line, never echoing the line itself (it may hold a secret).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from dotenv.parser import parse_stream

from daemon.errors import ConfigError


def read_env_file(path: Path) -> dict[str, str]:
    """The file's KEY=value settings; ConfigError naming the file (and the line) if it is unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"--env-file {path}: {why}; give the path of a file of KEY=value lines") from exc
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            raise ConfigError(
                f"--env-file {path}: line {line} is not KEY=value (an unclosed quote, or a key with "
                "spaces or symbols); write it as KEY=value, quoting a value with spaces or a #"
            )
        if binding.key is None:
            continue  # a blank or comment line
        if binding.value is None:
            raise ConfigError(
                f"--env-file {path}: line {line}: {binding.key} has no '='; write {binding.key}=value "
                f"({binding.key}= for an empty value)"
            )
        values[binding.key] = binding.value
    return values


def load_env_file(path: Path) -> None:
    """Loads an env file into os.environ; what the environment already sets wins."""
    for key, value in read_env_file(path).items():
        os.environ.setdefault(key, value)
