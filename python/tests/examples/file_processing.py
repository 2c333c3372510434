from mcli_daemon import daemon_command

@daemon_command(command_name="process_file")
def process_file(file_path: str, output_format: str = "json"):
    """Process file via daemon"""
    # File processing logic
    return {"processed": file_path, "format": output_format}
