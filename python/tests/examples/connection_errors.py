# Check daemon status
from mcli_daemon import get_daemon_client
client = get_daemon_client()
print(client.is_running())
