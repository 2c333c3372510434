from mcli_daemon import daemon_command

@daemon_command(command_name="model_generate")
def generate_text(prompt: str, model: str = "gpt-3.5-turbo"):
    """Generate text using model service via daemon"""
    # This will execute via daemon if enabled
    return f"Generated text for: {prompt}"
