"""Where a server is: the runtime dir and its checks, server names, the server file, and the
config keys the client reads. The rules are mcli-client's (docs/files.md, docs/cli.md), so the
Python client and the binaries always find the same server.
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any, Dict, Mapping, Optional

from .errors import DaemonUnavailable

DEFAULT_NAME = "server"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _env(environ: Mapping[str, str], key: str) -> Optional[str]:
    """A variable's value; set to the empty string counts as unset, as in the binaries."""
    value = environ.get(key)
    return value if value else None


def flag(value: Optional[str]) -> Optional[bool]:
    """`true`/`false` (and 1/0, yes/no, on/off, any case) as a bool; anything else is `None`."""
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def server_name(name: Optional[str], environ: Mapping[str, str] = os.environ) -> str:
    """The server's name: the argument, else `MCLI_SOCKET_NAME`, else `server`; checked."""
    chosen = name or _env(environ, "MCLI_SOCKET_NAME") or DEFAULT_NAME
    if not _NAME.fullmatch(chosen) or chosen.startswith("."):
        raise ValueError(
            f"invalid server name {chosen!r}: use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `.`"
        )
    return chosen


def runtime_dir(explicit: Optional[str] = None, environ: Mapping[str, str] = os.environ) -> str:
    """`MCLI_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/mcli`, else `/tmp/mcli-$UID`."""
    if explicit:
        return explicit
    chosen = _env(environ, "MCLI_RUNTIME_DIR")
    if chosen:
        return chosen
    xdg = _env(environ, "XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "mcli")
    return f"/tmp/mcli-{os.getuid()}"


def check_runtime_dir(path: str) -> bool:
    """Refuses a runtime dir that others could write to, as the binaries do; `False` when it
    does not exist (no server can be there, and the server creates it)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise DaemonUnavailable(f"cannot inspect runtime dir {path}: {error}; point MCLI_RUNTIME_DIR elsewhere") from None
    if stat.S_ISLNK(info.st_mode):
        raise DaemonUnavailable(
            f"runtime dir {path} is a symbolic link; mcli will not follow it. "
            f"Remove it (`rm {path}`) or point MCLI_RUNTIME_DIR at a private directory"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise DaemonUnavailable(f"runtime dir {path} is not a directory; remove it or point MCLI_RUNTIME_DIR elsewhere")
    uid = os.geteuid()
    if info.st_uid != uid:
        raise DaemonUnavailable(
            f"runtime dir {path} belongs to uid {info.st_uid}, not to you (uid {uid}); "
            "point MCLI_RUNTIME_DIR at a directory you own"
        )
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise DaemonUnavailable(f"runtime dir {path} is open to group or others (mode {mode:04o}); run `chmod 700 {path}`")
    return True


def read_server_file(path: str) -> Optional[Dict[str, Any]]:
    """The server file `NAME.json`, or `None` when there is none or it cannot be read."""
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def config_path(environ: Mapping[str, str] = os.environ) -> str:
    """`$MCLI_CONFIG`, else `$XDG_CONFIG_HOME/mcli/config.toml` (default `~/.config`)."""
    chosen = _env(environ, "MCLI_CONFIG")
    if chosen:
        return chosen
    base = _env(environ, "XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "mcli", "config.toml")


def _api_daemon_enabled_in(text: str) -> bool:
    """`[api_daemon] enabled` of a config file's text; false when absent or unreadable."""
    try:
        import tomllib  # Python 3.11 and later.

        table = tomllib.loads(text).get("api_daemon")
        return isinstance(table, dict) and table.get("enabled") is True
    except ImportError:
        pass
    except ValueError:
        return False
    # Before Python 3.11 there is no TOML parser in the standard library; this one key is simple
    # enough to find line by line.
    section = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[] ")
        elif section == "api_daemon" and "=" in line:
            key, _, value = line.partition("=")
            if key.strip() == "enabled":
                return value.strip() == "true"
    return False


def routing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether decorated functions go to the daemon: `MCLI_DAEMON_ROUTING` when it is a boolean,
    else `[api_daemon] enabled` (with its override `MCLI_API_DAEMON_ENABLED`), as the original."""
    routing = flag(environ.get("MCLI_DAEMON_ROUTING"))
    if routing is not None:
        return routing
    enabled = flag(environ.get("MCLI_API_DAEMON_ENABLED"))
    if enabled is not None:
        return enabled
    try:
        with open(config_path(environ), encoding="utf-8") as file:
            return _api_daemon_enabled_in(file.read())
    except OSError:
        return False
