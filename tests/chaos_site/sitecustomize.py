"""Loaded by every Python process of the chaos test's workflow (its directory is put on PYTHONPATH): lets
the test kill a job *inside* `daebench.data.store.atomic_path`, after the temporary file is written and
before it is renamed into place, the moment a non-atomic writer would leave a partial output.

While ``$DAEBENCH_CHAOS_CTL/armed`` exists, the rename of an atomic writer's temporary file (named
``.<name>.<pid>.<8 hex>.tmp<suffix>``, data._fs.open_temp_sibling) announces itself in
``$DAEBENCH_CHAOS_CTL/writing.<pid>`` and waits a few seconds for the test's SIGKILL. Disarmed, renames
cost one stat. Nothing here is imported by the project itself."""
import os
import re
import time

_CTL = os.environ.get("DAEBENCH_CHAOS_CTL")
_TEMP = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp")

if _CTL:
    _replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if _TEMP.match(os.path.basename(os.fspath(src))) and os.path.exists(os.path.join(_CTL, "armed")):
            with open(os.path.join(_CTL, f"writing.{os.getpid()}"), "w") as fh:
                fh.write(os.fspath(dst))
            time.sleep(5.0)
        return _replace(src, dst, *args, **kwargs)

    os.replace = replace
