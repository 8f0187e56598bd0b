"""Execution settings of a job (params.yaml ``compute``): the GPU fast paths and multi-process (DDP) training.

They reach a job through the DAEBENCH_COMPUTE environment variable, which the workflow sets from the
config, and never through Snakemake params: how a job runs must not rerun finished work. On CPU the GPU
fast paths are off whatever is set; :func:`effective` is what a job actually uses, and runs log it.

Multi-process training follows torchrun's contract (RANK, WORLD_SIZE, LOCAL_RANK in the environment):
``python -m daebench train ...`` with ``compute.nproc > 1`` re-executes itself under
``torch.distributed.run``, so the Snakemake rule's command stays the same for any process count.
"""
from __future__ import annotations

import inspect
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import torch

ENV = "DAEBENCH_COMPUTE"
# Must equal the defaults of `compute` in workflow/schemas/params.schema.yaml (a test checks).
DEFAULTS = {"amp": "bf16", "tf32": True, "channels_last": True, "compile": False, "nproc": 1,
            "data_on_device": "auto"}
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16}


def from_env(environ: Mapping[str, str] = os.environ) -> dict:
    """The job's compute settings: DAEBENCH_COMPUTE (JSON) over the defaults."""
    raw = environ.get(ENV)
    if not raw:
        return dict(DEFAULTS)
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{ENV} is not a JSON object ({err}): {raw[:120]!r}") from None
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"{ENV}: unknown key(s) {unknown}; known: {sorted(DEFAULTS)}")
    if cfg.get("amp", "none") not in AMP_DTYPES:
        raise ValueError(f"{ENV}: amp must be one of {sorted(AMP_DTYPES)}, not {cfg['amp']!r}")
    return {**DEFAULTS, **cfg}


def effective(compute: dict, device: torch.device) -> dict:
    """What a job on ``device`` uses: the GPU fast paths only on CUDA."""
    cuda = device.type == "cuda"
    return {"amp": compute["amp"] if cuda else "none", "tf32": bool(compute["tf32"] and cuda),
            "channels_last": bool(compute["channels_last"] and cuda), "compile": bool(compute["compile"] and cuda),
            "nproc": int(compute["nproc"]), "data_on_device": compute["data_on_device"] if cuda else False}


_EAGER: dict[type, type] = {}


def eager_optimizer(cls: type[torch.optim.Optimizer], params, **kwargs) -> torch.optim.Optimizer:
    """``cls(params, **kwargs)`` (Adam, AdamW), built so that an eager job never imports ``torch._dynamo``.

    torch imports torch._dynamo (1.5 s of CPU on the reference machine, most of a smoke training job's fixed
    cost) only to mark optimizer code "never trace": in ``Optimizer.add_param_group``'s ``_disable_dynamo``
    wrapper, and in the ``_use_grad_for_differentiable`` wrapper of ``step`` on every call. With nothing
    compiled neither mark does anything, so: the first wrapper's cached result (``fn.__dynamo_disable``) is
    filled in with the method itself, and ``step`` is the subclass's, which runs torch's own step body under
    ``torch.no_grad()``, exactly what the wrapper does for a non-differentiable optimizer. The update is
    torch's, bit for bit (tests/test_train.py). Under ``compute.compile``, once dynamo is loaded anyway, or
    where torch's wrappers are not the ones recognised, it is plain ``cls``."""
    raw_step = inspect.unwrap(cls.step)
    if "torch._dynamo" in sys.modules or from_env().get("compile") or raw_step is cls.step:
        return cls(params, **kwargs)
    for base in cls.__mro__:
        for attr in vars(base).values():
            fn, code = getattr(attr, "__wrapped__", None), getattr(attr, "__code__", None)
            if fn is not None and code is not None and code.co_qualname == "_disable_dynamo.<locals>.inner":
                fn.__dynamo_disable = fn
    if cls not in _EAGER:
        def step(self, closure=None):
            with torch.no_grad():
                return raw_step(self, closure)

        _EAGER[cls] = type(cls.__name__, (cls,), {"step": step, "__module__": __name__,
                                                   "__doc__": f"torch.optim.{cls.__name__}, eager (compute.eager_optimizer)"})
    return _EAGER[cls](params, **kwargs)


def set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun (WORLD_SIZE in the environment), at any process count

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """A DDP job: several processes, or one started by torchrun (so that one GPU runs the DDP path too)."""
        return self.world_size > 1 or self.launched


def dist_info(environ: Mapping[str, str] = os.environ) -> Dist:
    """This process's place in a torchrun job (one process outside torchrun)."""
    return Dist(int(environ.get("RANK", 0)), int(environ.get("WORLD_SIZE", 1)), int(environ.get("LOCAL_RANK", 0)),
                "WORLD_SIZE" in environ)


def init_distributed(device: torch.device) -> Dist:
    """Join the torchrun job's process group (NCCL on CUDA, gloo on CPU), also as torchrun's only process; a
    no-op outside torchrun."""
    import torch.distributed as dist

    info = dist_info()
    if info.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info


def torchrun_argv(nproc: int, argv: list[str]) -> list[str]:
    """The command that runs ``python -m daebench <argv>`` as ``nproc`` torchrun processes on this node."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "daebench", *argv]


def wants_relaunch(compute: dict, environ: Mapping[str, str] = os.environ) -> bool:
    return int(compute["nproc"]) > 1 and "WORLD_SIZE" not in environ


__all__ = ["AMP_DTYPES", "DEFAULTS", "ENV", "Dist", "dist_info", "effective", "from_env", "init_distributed",
           "set_tf32", "torchrun_argv", "wants_relaunch"]
