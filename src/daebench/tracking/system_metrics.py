"""System metrics of a run ("system/*": CPU %, memory, disk, network, process CPU/RSS, GPU through pynvml
when installed, torch CUDA memory when CUDA is in use), sampled from a daemon thread while the run's body
runs, with a final sample when it ends, so a short job still gets a point."""
from __future__ import annotations

import logging
import os
import sys
import threading
import time

from .store import retry

log = logging.getLogger("daebench.tracking")  # one logger for MLflow tracking, whichever module logs

SYSTEM_METRICS_INTERVAL = 5.0  # seconds between samples
SYSTEM_METRICS_SAMPLES = 2  # samples averaged per logged point (one point per ~10 s)


def _process_monitor_class():
    import psutil
    from mlflow.system_metrics.metrics.base_metrics_monitor import BaseMetricsMonitor

    class ProcessMonitor(BaseMetricsMonitor):
        """This process (all jobs share the machine-wide numbers): CPU % (100 = one core), RSS, and the
        torch CUDA allocator's memory once CUDA is in use (never initialises CUDA itself)."""

        def __init__(self):
            super().__init__()
            self._proc = psutil.Process()
            self._proc.cpu_percent()  # the first call only sets the reference point

        def collect_metrics(self):
            self._metrics["process_cpu_utilization_percentage"].append(self._proc.cpu_percent())
            self._metrics["process_memory_rss_megabytes"].append(self._proc.memory_info().rss / 1e6)
            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_initialized():
                for i in range(torch.cuda.device_count()):
                    self._metrics[f"process_gpu_{i}_allocated_megabytes"].append(torch.cuda.memory_allocated(i) / 1e6)
                    self._metrics[f"process_gpu_{i}_reserved_megabytes"].append(torch.cuda.memory_reserved(i) / 1e6)

        def aggregate_metrics(self):
            return {k: round(sum(v) / len(v), 1) for k, v in self._metrics.items() if v}

    return ProcessMonitor


def start_monitor(run_id: str, client, uri: str, interval: float, samples: int, resume: bool):
    """A started mlflow SystemMetricsMonitor variant: samples every ``interval`` s in a daemon thread, logs
    the mean of ``samples`` samples per point through ``client`` with retries (mlflow's own gives up on the
    first "database is locked"), does not poll the run's status, and logs a final sample on finish().
    MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL / _SAMPLES_BEFORE_LOGGING / _NODE_ID override as in mlflow."""
    import psutil
    from mlflow.entities import Metric
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    class Monitor(SystemMetricsMonitor):
        def __init__(self):
            super().__init__(run_id, sampling_interval=interval, samples_before_logging=samples,
                             resume_logging=resume, tracking_uri=uri)
            self.sampling_interval = max(0.1, float(self.sampling_interval))
            self.samples_before_logging = max(1, int(self.samples_before_logging))
            self.monitors.append(_process_monitor_class()())
            self._collected = 0
            psutil.cpu_percent()  # reference point for the first sample's CPU %

        def start(self):
            self._process = threading.Thread(target=self.monitor, daemon=True, name="SystemMetricsMonitor")
            self._process.start()

        def monitor(self):
            try:
                while not self._shutdown_event.wait(self.sampling_interval):
                    self.collect_metrics()
                    self._collected += 1
                    if self._collected >= self.samples_before_logging:
                        self.publish_metrics(self.aggregate_metrics())
            except Exception as exc:  # noqa: BLE001 - system metrics / bookkeeping must not fail the job
                log.warning("system metrics logging stopped for run %s: %s", run_id, exc)

        def publish_metrics(self, metrics):
            prefix = self._metrics_prefix + (self.node_id + "/" if self.node_id else "")
            ts = int(time.time() * 1000)
            batch = [Metric(prefix + k, float(v), ts, self._logging_step) for k, v in metrics.items()]
            for m in self.monitors:
                m.clear_metrics()
            self._collected = 0
            if batch:
                retry(lambda: client.log_batch(run_id, metrics=batch), attempts=5)
            self._logging_step += 1

        def finish(self, timeout: float = 30.0):
            if self._process is None:
                return
            self._shutdown_event.set()
            self._process.join(timeout)
            alive, self._process = self._process.is_alive(), None
            if alive:  # stuck in a write; it is a daemon thread and will not keep the process alive
                log.warning("system metrics thread of run %s did not stop within %.0fs", run_id, timeout)
                return
            try:  # the tail of the run (the whole run if it was shorter than one interval)
                self.collect_metrics()
                self.publish_metrics(self.aggregate_metrics())
            except Exception as exc:  # noqa: BLE001 - system metrics / bookkeeping must not fail the job
                log.warning("final system metrics of run %s not logged: %s", run_id, exc)

    mon = Monitor()
    mon.start()
    return mon


def enabled(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    # opt-out only: mlflow's own default for this variable (False) is about mlflow.start_run()
    return os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "").strip().lower() not in ("false", "0", "no")
