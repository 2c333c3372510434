"""daemon_command and daemon_group on Click commands and groups, and how a call's arguments
become a command's args."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from mcli_daemon import daemon_command, daemon_group
from mcli_daemon.decorators import call_args


def echo_command(mcli, name):
    mcli.script(name, f'echo "daemon {name}: $*"\n')


def test_call_args_from_a_plain_signature():
    def f(a, b, *rest, flag=False, count=1, tags=(), opts=None, **extra):
        pass

    assert call_args(f, ("x", 2), {}) == ["x", "2"]
    assert call_args(f, ("x", "y", "z"), {"flag": True, "count": 3}) == ["x", "y", "z", "--flag", "--count", "3"]
    assert call_args(f, ("x", "y"), {"flag": False, "tags": ["a", "b"]}) == ["x", "y", "--tags", "a", "--tags", "b"]
    assert call_args(f, ("x", "y"), {"opts": {"k": 1}, "dry_run": True}) == ["x", "y", "--opts", '{"k": 1}', "--dry-run"]
    with pytest.raises(TypeError):
        call_args(f, ("x",), {})


@pytest.fixture
def routed(mcli, monkeypatch):
    monkeypatch.setenv("MCLI_DAEMON_ROUTING", "true")
    return mcli


def greet_command():
    @daemon_command(command_name="greet")
    @click.command()
    @click.argument("name")
    @click.option("--shout/--no-shout", default=False)
    @click.option("--times", type=int, default=1)
    @click.option("-v", "--verbose", count=True)
    def greet(name, shout, times, verbose):
        click.echo(f"local {name} {shout} {times} {verbose}")

    return greet


def test_a_click_command_runs_on_the_daemon(routed):
    echo_command(routed, "greet")
    result = CliRunner().invoke(greet_command(), ["Ada", "--shout", "-vv"])
    assert result.exit_code == 0, result.output
    assert result.output == "daemon greet: Ada --shout --verbose --verbose\n"


def test_a_click_command_runs_locally_without_routing(mcli):
    result = CliRunner().invoke(greet_command(), ["Ada", "--times", "2"])
    assert result.output == "local Ada False 2 0\n"


def test_a_failing_routed_click_command_exits_with_its_status(routed):
    routed.script("greet", 'echo "no greeting for $1" >&2\nexit 5\n')
    result = CliRunner().invoke(greet_command(), ["Ada"])
    assert result.exit_code == 5
    assert "no greeting for Ada" in result.output


def test_daemon_command_under_click_command(routed):
    echo_command(routed, "hi")

    @click.command()
    @click.argument("who")
    @click.option("--loud", is_flag=True)
    @daemon_command(command_name="hi")
    def hi(who, loud):
        click.echo("local")

    assert CliRunner().invoke(hi, ["Grace", "--loud"]).output == "daemon hi: Grace --loud\n"


def test_a_click_group_routes_its_subcommands_as_typed(routed):
    echo_command(routed, "tools")

    @daemon_group(group_name="tools")
    @click.group()
    def tools():
        pass

    @tools.command()
    @click.argument("path")
    @click.option("--format", default="json")
    def convert(path, format):
        click.echo(f"local convert {path} {format}")

    result = CliRunner().invoke(tools, ["convert", "a.csv", "--format", "yaml"])
    assert result.exit_code == 0, result.output
    assert result.output == "daemon tools: convert a.csv --format yaml\n"


def test_a_click_group_falls_back_to_local(mcli, monkeypatch, no_server_on_path):
    monkeypatch.setenv("MCLI_DAEMON_ROUTING", "true")

    @daemon_group()
    @click.group()
    def tools():
        pass

    @tools.command()
    def ping():
        click.echo("local pong")

    assert CliRunner().invoke(tools, ["ping"]).output == "local pong\n"
