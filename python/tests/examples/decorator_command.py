from mcli_daemon import daemon_command

@daemon_command(
    command_name="my_command",
    auto_route=True,
    fallback_to_local=True,
    timeout=30
)
def my_command(name: str, verbose: bool = False):
    """My command that can run via daemon"""
    return f"Hello {name}!"
