#!/usr/bin/env python3
"""The original MCLI API daemon's documented client, against mcli's HTTP bridge.

Modelled on `APIDaemonClient` and the `daemon_command` decorator of the original
(seed/MCLI_API_DAEMON.md): `health_check()`, `status()`, `list_commands()`,
`execute_command(command_name, args)`, `is_running()`, and a decorator that returns the
`result` field of `POST /execute`. Only the Python 3 standard library is used.

Usage: original_client.py [BASE_URL [TOKEN]]
       (else $MCLI_HTTP_URL and $MCLI_TOKEN; the token goes in `X-API-Key`)

Runs the calls, asserts on the JSON, prints `ok` and exits 0; exits non-zero on any failure.
"""

import functools
import json
import os
import sys
import time
import urllib.error
import urllib.request


class DaemonError(Exception):
    """An HTTP error status from the daemon, with its JSON body when it had one."""

    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body!r}")
        self.status = status
        self.body = body


class APIDaemonClient:
    """The original's client: JSON over HTTP, one call per method."""

    def __init__(self, base_url, token=None, timeout=30):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        # Never through a proxy from the environment: the daemon is on loopback.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _request(self, method, path, body=None, token=True):
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if token and self.token:
            headers["X-API-Key"] = self.token
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                text = response.read().decode("utf-8")
                return json.loads(text) if text else None
        except urllib.error.HTTPError as err:
            text = err.read().decode("utf-8", "replace")
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            raise DaemonError(err.code, parsed) from None

    def health_check(self):
        return self._request("GET", "/health", token=False)

    def status(self):
        return self._request("GET", "/status")

    def list_commands(self):
        return self._request("GET", "/commands")

    def execute_command(self, command_name, args=None, timeout=None):
        body = {"command_name": command_name, "args": list(args or [])}
        if timeout is not None:
            body["timeout"] = timeout
        return self._request("POST", "/execute", body)

    def is_running(self):
        try:
            return self.health_check().get("status") == "healthy"
        except (DaemonError, OSError):
            return False

    def wait_for_daemon(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                return True
            time.sleep(0.05)
        return False


def daemon_command(command_name=None, client=None, fallback_to_local=True, timeout=None):
    """Runs the decorated function's command on the daemon and returns its `result`; falls
    back to calling the function locally when the daemon cannot run it."""

    def decorate(func):
        name = command_name or func.__name__

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            argv = [str(a) for a in args]
            for key, value in kwargs.items():
                flag = "--" + key.replace("_", "-")
                if value is True:
                    argv.append(flag)
                elif value not in (False, None):
                    argv += [flag, str(value)]
            try:
                reply = client.execute_command(name, args=argv, timeout=timeout)
                if reply.get("success"):
                    return reply["result"]
            except (DaemonError, OSError):
                if not fallback_to_local:
                    raise
            if not fallback_to_local:
                raise RuntimeError(f"the daemon could not run {name}")
            return func(*args, **kwargs)

        return wrapper

    return decorate


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def main(argv):
    base_url = argv[1] if len(argv) > 1 else os.environ.get("MCLI_HTTP_URL")
    token = argv[2] if len(argv) > 2 else os.environ.get("MCLI_TOKEN")
    check(base_url, "usage: original_client.py BASE_URL [TOKEN] (or $MCLI_HTTP_URL, $MCLI_TOKEN)")
    check(token, "no token: pass it as the second argument or in $MCLI_TOKEN")
    client = APIDaemonClient(base_url, token)

    check(client.wait_for_daemon(timeout=30), "the daemon is not running")
    check(client.is_running(), "is_running() is false")

    health = client.health_check()
    check(health["status"] == "healthy", f"health: {health}")

    status = client.status()
    check(status["running"] is True, f"status: {status}")
    check(isinstance(status["active_commands"], list), f"status: {status}")
    check(isinstance(status["command_history_count"], int), f"status: {status}")
    check(isinstance(status["config"], dict), f"status: {status}")
    # The documented monitoring snippet.
    print(f"Active commands: {status['active_commands']}")
    print(f"Command history: {status['command_history_count']}")
    history_before = status["command_history_count"]

    commands = client.list_commands()
    names = [c["name"] for c in commands["commands"]]
    check(commands["total"] == len(names), f"commands: {commands}")
    check("hello" in names and "echo" in names, f"commands: {names}")

    # The documented basic usage.
    result = client.execute_command(command_name="hello", args=["--verbose"])
    check(result["success"] is True, f"execute: {result}")
    check(result["output"] == "Hello World! (verbose mode)\n", f"execute: {result}")
    check(result["result"] == result["output"], f"execute: {result}")
    check(result["exit_code"] == 0 and result["error"] is None, f"execute: {result}")
    check(result["status"] == "completed", f"execute: {result}")
    check(isinstance(result["execution_time_ms"], int), f"execute: {result}")

    # The CI/CD snippet: a failure is reported, not raised.
    result = client.execute_command("exit", args=["3"])
    check(result["success"] is False and result["exit_code"] == 3, f"failing execute: {result}")

    # An unknown command is a 404 with a JSON error.
    try:
        client.execute_command("no-such-command")
        check(False, "an unknown command did not fail")
    except DaemonError as err:
        check(err.status == 404, f"unknown command: {err}")
        check(err.body["success"] is False and err.body["error"], f"unknown command: {err}")

    # The decorator: runs on the daemon and returns `result`.
    ran_locally = []

    @daemon_command(command_name="hello", client=client)
    def my_function(name, verbose=False):
        ran_locally.append(name)
        result = f"Hello {name}!"
        if verbose:
            result += " (verbose mode)"
        return result

    value = my_function("World", verbose=True)
    check(value == "Hello World! (verbose mode)\n", f"decorated call: {value!r}")
    check(ran_locally == [], "the decorated call ran locally")

    # Without the token the daemon refuses; health stays open.
    anonymous = APIDaemonClient(base_url, None)
    check(anonymous.is_running(), "health needs no token")
    try:
        anonymous.status()
        check(False, "status without a token succeeded")
    except DaemonError as err:
        check(err.status == 401, f"status without a token: {err}")

    # Through the decorator, a daemon that refuses falls back to the local function.
    @daemon_command(command_name="hello", client=anonymous)
    def fallback(name):
        ran_locally.append(name)
        return f"local {name}"

    check(fallback("Ann") == "local Ann" and ran_locally == ["Ann"], "no local fallback")

    status = client.status()
    check(status["command_history_count"] == history_before + 3, f"history count: {status}")
    print("ok")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as err:  # noqa: BLE001 - report any failure as a non-zero exit
        print(f"FAILED: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
