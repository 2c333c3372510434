"""An example warm worker, after the original's "model service": an expensive start (loading a
model: here a 300 ms stand-in), then fast calls that use the loaded state."""

from mcli_worker import command, serve  # provided by mcli itself: import it first

import os
import time

time.sleep(0.3)  # stands in for loading a model
MODEL = {"loaded_at": time.time(), "calls": 0}


@command("model")
def generate(prompt="Hello", *rest):
    MODEL["calls"] += 1
    print(f"Generated text for: {prompt} (call {MODEL['calls']} of worker {os.getpid()})")
    return 0


serve()
