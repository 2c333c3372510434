from mcli_daemon import get_daemon_client

client = get_daemon_client()
status = client.status()
print(f"Active commands: {status['active_commands']}")
print(f"Command history: {status['command_history_count']}")
