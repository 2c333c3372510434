from mcli_daemon import APIDaemonClient, DaemonClientConfig

# Custom configuration
config = DaemonClientConfig(
    host="localhost",
    port=8000,
    timeout=30,
    retry_attempts=3
)

client = APIDaemonClient(config)

# Health check
health = client.health_check()

# Get status
status = client.status()

# List commands
commands = client.list_commands()

# Wait for daemon
if client.wait_for_daemon(timeout=30):
    print("Daemon is ready")
