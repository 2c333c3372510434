# In CI/CD pipeline
from mcli_daemon import get_daemon_client

client = get_daemon_client()
result = client.execute_command("test_workflow", args=["--verbose"])
assert result["success"]
