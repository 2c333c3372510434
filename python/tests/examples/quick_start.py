from mcli_daemon import daemon_command

@daemon_command(command_name="my_function", timeout=30)
def my_function(name: str, verbose: bool = False):
    """Function that can be executed via daemon"""
    result = f"Hello {name}!"
    if verbose:
        result += " (verbose mode)"
    return result

# Execute via daemon (if enabled) or locally (fallback)
result = my_function("World", verbose=True)
