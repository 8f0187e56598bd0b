"""Progress bars that stay readable in a log file. On a terminal: tqdm as usual. When stderr is not a terminal
(a Snakemake job writing to logs/..., a SLURM job), tqdm's carriage-return redraws would pile up into one
line that `tail` cannot show; there each redraw becomes its own line, at most one every ``LOG_INTERVAL_S``
seconds (``log_every`` updates, where the caller has log points, e.g. the training loop)."""
from __future__ import annotations

import sys
import time

LOG_INTERVAL_S = 30.0


class _Lines:
    """A file for tqdm that turns each redraw into one line and drops the clearing writes."""

    def __init__(self, stream):
        self.stream = stream
        self.last = None

    def write(self, s: str) -> None:
        s = s.replace("\r", "").strip()
        where = s.split(" [", 1)[0]  # "desc: n/total (pct%)": tqdm's closing redraw repeats the last point
        if s and where != self.last:  # stamped like the logging lines around it (logging's asctime)
            self.last = where
            now = time.time()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"
            self.stream.write(f"{stamp} {s}\n")

    def flush(self) -> None:
        self.stream.flush()


def tqdm(*args, log_every: int | None = None, **kwargs):
    """tqdm.tqdm on a terminal; one line per redraw elsewhere (every ``log_every`` updates if given, else at
    most one per LOG_INTERVAL_S)."""
    from tqdm import tqdm as _tqdm

    stream = kwargs.get("file") or sys.stderr
    if not getattr(stream, "isatty", lambda: False)():
        # no bar in a log file: step/total, percent, elapsed<ETA, rate and the postfix (losses, lr, examples/s)
        kwargs.update(file=_Lines(stream), dynamic_ncols=False, ncols=None,
                      bar_format="{desc}: {n_fmt}/{total_fmt} ({percentage:3.0f}%) [{elapsed}<{remaining}, "
                                 "{rate_fmt}{postfix}]")
        if log_every:
            kwargs.update(miniters=log_every, mininterval=0.0, maxinterval=float("inf"))
        else:
            kwargs.update(mininterval=max(kwargs.get("mininterval", 0.1), LOG_INTERVAL_S))
    return _tqdm(*args, **kwargs)
