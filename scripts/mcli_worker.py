"""`import mcli_worker` from a checkout: the helper itself is python/mcli_daemon/worker.py.

That file is the one source of the worker helper: pip installs it as `mcli_daemon.worker`, and
mcli-server embeds it and gives it to every worker as `mcli_worker`. This shim keeps
`scripts/` usable on PYTHONPATH without a second copy: it runs that file as the module
`mcli_worker` and puts it in this module's place, so `from mcli_worker import command, serve`
gets the real functions and the helper's import-time setup happens exactly once.
"""

import importlib.util
import os
import sys

_SOURCE = os.path.join(os.path.dirname(os.path.realpath(__file__)), os.pardir, "python", "mcli_daemon", "worker.py")
_SPEC = importlib.util.spec_from_file_location(__name__, _SOURCE)
if _SPEC is None or _SPEC.loader is None:
    raise ImportError(f"mcli_worker: cannot load {_SOURCE}; the checkout is incomplete, restore python/mcli_daemon/worker.py")
_MODULE = importlib.util.module_from_spec(_SPEC)
sys.modules[__name__] = _MODULE
_SPEC.loader.exec_module(_MODULE)
