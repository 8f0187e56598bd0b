"""System metrics of a run ("system/*", the names MLflow's own monitor uses: machine CPU %, memory, disk,
network; this process's CPU % and RSS; GPU utilisation and memory through pynvml when installed; torch's CUDA
allocator once CUDA is in use), sampled from a daemon thread while the run's body runs, with a final sample
when it ends, so a short job still gets a point. Logged through the run's handle (public MLflow API or the
journal), so it works the same whether the job talks to MLflow or not."""
from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger("daebench.tracking")  # one logger for MLflow tracking, whichever module logs

SYSTEM_METRICS_INTERVAL = 5.0  # seconds between samples
SYSTEM_METRICS_SAMPLES = 2  # samples averaged per logged point (one point per ~10 s)


def enabled(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    # opt-out only: mlflow's own default for this variable (False) is about mlflow.start_run()
    return os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "").strip().lower() not in ("false", "0", "no")


def _gpus():
    """pynvml device handles, or [] without pynvml or a driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # noqa: BLE001 - no NVIDIA library or driver: no GPU metrics
        return []


class Sampler:
    """Samples every ``interval`` s (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides) in a daemon thread and
    logs the mean of ``samples`` samples (MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING) per point through
    ``run.log_metrics``; ``finish()`` logs the tail. A failing log stops the sampler with a warning, never the
    job."""

    def __init__(self, run, interval: float = SYSTEM_METRICS_INTERVAL, samples: int = SYSTEM_METRICS_SAMPLES):
        import psutil

        interval = float(os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL") or interval)
        samples = int(os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING") or samples)
        self.run, self.interval, self.samples = run, max(0.1, interval), max(1, samples)
        self._psutil, self._proc, self._gpus = psutil, psutil.Process(), _gpus()
        self._stop, self._buf, self._step = threading.Event(), {}, 0
        psutil.cpu_percent()
        self._proc.cpu_percent()  # the first calls only set the reference points
        self._net0 = psutil.net_io_counters()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="SystemMetricsMonitor")
        self._thread.start()

    def _collect(self) -> None:
        ps, add = self._psutil, lambda k, v: self._buf.setdefault(k, []).append(float(v))
        mem, disk, net = ps.virtual_memory(), ps.disk_usage(os.getcwd()), ps.net_io_counters()
        add("cpu_utilization_percentage", ps.cpu_percent())
        add("system_memory_usage_megabytes", mem.used / 1e6)
        add("system_memory_usage_percentage", mem.percent)
        add("disk_usage_percentage", disk.percent)
        add("disk_usage_megabytes", disk.used / 1e6)
        add("disk_available_megabytes", disk.free / 1e6)
        if net is not None and self._net0 is not None:
            add("network_receive_megabytes", (net.bytes_recv - self._net0.bytes_recv) / 1e6)
            add("network_transmit_megabytes", (net.bytes_sent - self._net0.bytes_sent) / 1e6)
        add("process_cpu_utilization_percentage", self._proc.cpu_percent())
        add("process_memory_rss_megabytes", self._proc.memory_info().rss / 1e6)
        if self._gpus:
            import pynvml

            for i, h in enumerate(self._gpus):
                add(f"gpu_{i}_utilization_percentage", pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
                add(f"gpu_{i}_memory_usage_megabytes", pynvml.nvmlDeviceGetMemoryInfo(h).used / 1e6)
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            for i in range(torch.cuda.device_count()):
                add(f"process_gpu_{i}_allocated_megabytes", torch.cuda.memory_allocated(i) / 1e6)
                add(f"process_gpu_{i}_reserved_megabytes", torch.cuda.memory_reserved(i) / 1e6)

    def _publish(self) -> None:
        if self._buf:
            self.run.log_metrics({f"system/{k}": round(sum(v) / len(v), 1) for k, v in self._buf.items()},
                                 step=self._step)
            self._buf, self._step = {}, self._step + 1

    def _loop(self) -> None:
        try:
            n = 0
            while not self._stop.wait(self.interval):
                self._collect()
                n += 1
                if n >= self.samples:
                    self._publish()
                    n = 0
        except Exception as exc:  # noqa: BLE001 - system metrics / bookkeeping must not fail the job
            log.warning("system metrics logging stopped for run %s: %s", self.run.run_id, exc)

    def finish(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():  # stuck in a write; a daemon thread does not keep the process alive
            log.warning("system metrics thread of run %s did not stop within %.0fs", self.run.run_id, timeout)
            return
        try:  # the tail of the run (the whole run if it was shorter than one interval)
            self._collect()
            self._publish()
        except Exception as exc:  # noqa: BLE001 - system metrics / bookkeeping must not fail the job
            log.warning("final system metrics of run %s not logged: %s", self.run.run_id, exc)
