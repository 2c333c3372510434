from mcli_daemon import get_daemon_client

# Get daemon client
client = get_daemon_client()

# Check if daemon is running
if client.is_running():
    # Execute command
    result = client.execute_command(
        command_name="hello",
        args=["--verbose"]
    )
    print(f"Result: {result}")
