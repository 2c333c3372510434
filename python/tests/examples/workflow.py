from mcli_daemon import daemon_command

@daemon_command(command_name="workflow_run")
def run_workflow(workflow_name: str, parameters: dict = None):
    """Run workflow via daemon"""
    # Workflow execution logic
    return {"workflow": workflow_name, "status": "completed"}
