"""`daemon_command` and `daemon_group`: run a function, a Click command or a Click group
through the mcli server when routing is on, and locally when it is off (or, with
`fallback_to_local`, when no server can be reached).

A routed call sends its arguments as the command's args. For a plain function they come from
its signature: parameters without a default (and `*args`) are positional, sent as strings;
parameters with a default, keyword-only ones (and `**kwargs`) are options, `--name value` with
`_` written `-`; `True` is a bare `--name`, `False` and `None` are left out; a list or tuple
repeats the option; a dict is sent as JSON. For a Click command they come from its parsed
params (arguments in order, options by their long name, flags as flags), leaving out the
values that are Click's defaults. Click is used only when the program imports it.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from typing import Any, Callable, Dict, List, Optional, TypeVar

from . import _locate, errors
from .client import get_daemon_client

__all__ = ["daemon_command", "daemon_group", "is_daemon_routing_enabled"]

T = TypeVar("T")


def is_daemon_routing_enabled() -> bool:
    """`MCLI_DAEMON_ROUTING` when it is set to a boolean, else `[api_daemon] enabled` of the
    config file (or its override `MCLI_API_DAEMON_ENABLED`)."""
    return _locate.routing_enabled()


# The original's name, used by its troubleshooting snippet.
_is_daemon_routing_enabled = is_daemon_routing_enabled


def _click() -> Any:
    """The click module when the program has imported it; the package never imports it."""
    return sys.modules.get("click")


def _as_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict) else str(value)


def _option(name: str, value: Any) -> List[str]:
    flag = name if name.startswith("-") else "--" + name.replace("_", "-")
    if value is None or value is False:
        return []
    if value is True:
        return [flag]
    if isinstance(value, (list, tuple)):
        return [part for item in value for part in _option(flag, item)]
    return [flag, _as_text(value)]


def _positional(value: Any) -> List[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [_as_text(item) for item in value]
    return [_as_text(value)]


def call_args(function: Callable[..., Any], args: tuple, kwargs: Dict[str, Any]) -> List[str]:
    """A plain call's arguments as a command's args (see the module's doc)."""
    signature = inspect.signature(function)
    bound = signature.bind(*args, **kwargs)
    positional: List[str] = []
    options: List[str] = []
    for name, value in bound.arguments.items():
        parameter = signature.parameters[name]
        if parameter.kind is parameter.VAR_POSITIONAL:
            positional.extend(_as_text(item) for item in value)
        elif parameter.kind is parameter.VAR_KEYWORD:
            for key, item in value.items():
                options.extend(_option(key, item))
        elif parameter.kind is parameter.KEYWORD_ONLY or parameter.default is not parameter.empty:
            options.extend(_option(name, value))
        else:
            positional.extend(_positional(value))
    return positional + options


def click_args(ctx: Any) -> List[str]:
    """A Click context's parsed params as a command's args."""
    click = _click()
    default_source = getattr(getattr(click.core, "ParameterSource", None), "DEFAULT", None)
    positional: List[str] = []
    options: List[str] = []
    for param in ctx.command.params:
        if not param.expose_value or param.name not in ctx.params:
            continue
        value = ctx.params[param.name]
        if default_source is not None and ctx.get_parameter_source(param.name) == default_source:
            continue
        if isinstance(param, click.Argument):
            positional.extend(_positional(value))
            continue
        longest = max(param.opts, key=len)
        if getattr(param, "is_flag", False) and getattr(param, "secondary_opts", None):
            options.append(longest if value else max(param.secondary_opts, key=len))
        elif getattr(param, "count", False):
            options.extend([longest] * int(value or 0))
        else:
            options.extend(_option(longest, value))
    return positional + options


def _exit_status(result: Dict[str, Any]) -> int:
    """The status a routed Click command exits with, as mcli-client's."""
    if result.get("status") == "timed_out":
        return 124
    if result.get("status") == "cancelled":
        return 130
    if result.get("exit_code") is not None:
        return int(result["exit_code"])
    if result.get("signal") is not None:
        return 128 + int(result["signal"])
    return 1


def _echo(result: Dict[str, Any]) -> None:
    """Writes a routed Click command's output where the command would have written it."""
    import base64

    for name, stream in (("output", sys.stdout), ("stderr", sys.stderr)):
        encoded = result.get(f"{name}_b64")
        if encoded:
            stream.flush()
            binary: Any = getattr(stream, "buffer", stream)
            binary.write(base64.b64decode(encoded))
        elif result.get(name):
            stream.write(result[name])
        stream.flush()


def _route(name: str, argv: List[str], timeout: Optional[float], fallback: bool, local: Callable[[], T]) -> Any:
    """Runs `name` on the server; `local()` when none answers and `fallback` allows."""
    try:
        return get_daemon_client().execute_command(name, argv, timeout)
    except errors.DaemonUnavailable:
        if fallback:
            return _Local(local())
        raise


class _Local:
    """A local run's return value, told apart from a routed result."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _finish_click(name: str, result: Any) -> Any:
    """A routed Click callback's end: its output written, its status the program's."""
    if isinstance(result, _Local):
        return result.value
    _echo(result)
    if not result.get("success"):
        raise _click().exceptions.Exit(_exit_status(result))
    return result.get("output")


def _finish_plain(name: str, result: Any) -> Any:
    if isinstance(result, _Local):
        return result.value
    if not result.get("success"):
        raise errors.CommandFailed(name, result)
    return result.get("output")


def _wraps_to(candidate: Any, target: Any) -> bool:
    """Whether `candidate` is `target` or wraps it (Click's `pass_context` and the like)."""
    for _ in range(16):
        if candidate is target:
            return True
        candidate = getattr(candidate, "__wrapped__", None)
        if candidate is None:
            return False
    return False


def _routed_function(function: Callable[..., Any], name: str, auto_route: bool, fallback: bool, timeout: Optional[float]):
    @functools.wraps(function)
    def routed(*args: Any, **kwargs: Any) -> Any:
        if not (auto_route and is_daemon_routing_enabled()):
            return function(*args, **kwargs)
        click = _click()
        ctx = click.get_current_context(silent=True) if click is not None else None
        if ctx is not None and _wraps_to(ctx.command.callback, routed):
            result = _route(name, click_args(ctx), timeout, fallback, lambda: function(*args, **kwargs))
            return _finish_click(name, result)
        result = _route(name, call_args(function, args, kwargs), timeout, fallback, lambda: function(*args, **kwargs))
        return _finish_plain(name, result)

    routed.daemon_command_name = name  # type: ignore[attr-defined]
    return routed


def _route_group(group: Any, name: str, auto_route: bool, fallback: bool, timeout: Optional[float]) -> Any:
    """Routes every invocation of a Click group's subcommands to the command `name`, with the
    subcommand's name and its arguments, as typed, as args."""
    invoke = group.invoke

    def routed_invoke(ctx: Any) -> Any:
        rest = list(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", []) or []) + list(ctx.args)
        if not rest or not (auto_route and is_daemon_routing_enabled()):
            return invoke(ctx)
        result = _route(name, click_args(ctx) + rest, timeout, fallback, lambda: invoke(ctx))
        return _finish_click(name, result)

    group.invoke = routed_invoke
    group.daemon_command_name = name
    return group


def daemon_command(
    command_name: Optional[str] = None,
    auto_route: bool = True,
    fallback_to_local: bool = True,
    timeout: Optional[float] = None,
) -> Callable[[T], T]:
    """Routes a function or a Click command to the mcli command `command_name` (default: the
    function's or the Click command's name) when routing is on. A routed call returns the
    command's output; a command that fails raises `CommandFailed` (a Click command exits with
    its status instead); with no server to reach it runs locally when `fallback_to_local`,
    else raises `DaemonUnavailable`."""

    def decorate(target: Any) -> Any:
        click = _click()
        if click is not None and isinstance(target, click.Group):
            return _route_group(target, command_name or target.name, auto_route, fallback_to_local, timeout)
        if click is not None and isinstance(target, click.Command):
            name = command_name or target.name
            target.callback = _routed_function(target.callback, name, auto_route, fallback_to_local, timeout)
            target.daemon_command_name = name
            return target
        return _routed_function(target, command_name or target.__name__, auto_route, fallback_to_local, timeout)

    return decorate


def daemon_group(group_name: Optional[str] = None) -> Callable[[T], T]:
    """Routes a Click group (or a plain function) to the mcli command `group_name` (default: its
    name): `cli GROUP SUB ARGS...` runs `GROUP` on the server with `SUB ARGS...` as args, so
    one command serves the whole group. Routing and fallback are as for `daemon_command`."""
    return daemon_command(command_name=group_name)
