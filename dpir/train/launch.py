"""Multi-process training: torch.distributed from torchrun's environment, and ``dpir train --gpus N``.

``torchrun --nproc_per_node N -m dpir train --network X ...`` (or ``srun ... torchrun --nnodes ...``
inside a SLURM job, see ``profiles/slurm``) starts N processes with ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`distributed_env` reads them and
:func:`init` joins the process group (nccl on CUDA, one GPU per local rank; gloo on the CPU).
``dpir train --gpus N`` runs that torchrun line itself (:func:`launch`).

The configured ``train.batch`` is the global batch: each process trains on its contiguous share of
every step's samples (:class:`dpir.data.loader.StepBatches`) and the gradients are averaged over the
processes before each optimiser step, so N processes train what one process would.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch

from dpir.errors import DpirError

ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
FIX = "launch with `torchrun --nproc_per_node N -m dpir train ...` or `dpir train --gpus N ...`"


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Only the main process writes checkpoints, state, logs and prints."""
        return self.rank == 0


def distributed_env(environ=None) -> DistEnv | None:
    """torchrun's environment, or None for a plain single-process run.  Some but not all of its
    variables set (a hand-made launch, a wrapper that drops some): a DpirError naming the missing ones."""
    environ = os.environ if environ is None else environ
    present = [k for k in ENV if k in environ]
    if not present:
        return None
    missing = [k for k in ENV if k not in environ]
    if missing:
        raise DpirError(f"a distributed (DDP) launch needs the environment variables torchrun sets; "
                        f"{', '.join(missing)} missing (found {', '.join(present)}): {FIX}")
    try:
        env = DistEnv(rank=int(environ["RANK"]), local_rank=int(environ["LOCAL_RANK"]),
                      world=int(environ["WORLD_SIZE"]))
    except ValueError:
        raise DpirError(f"RANK, LOCAL_RANK and WORLD_SIZE must be integers, got {environ['RANK']!r}, "
                        f"{environ['LOCAL_RANK']!r}, {environ['WORLD_SIZE']!r}: {FIX}") from None
    if not (0 <= env.rank < env.world):
        raise DpirError(f"RANK {env.rank} is not in 0..WORLD_SIZE-1 ({env.world}): {FIX}")
    return env


def init(device: torch.device) -> tuple[DistEnv, torch.device]:
    """Join the process group when launched by torchrun; returns (env, this process's device)."""
    env = distributed_env()
    if env is None or env.world == 1:
        return env or DistEnv(), device
    import torch.distributed as dist

    if device.type == "cuda":
        if env.local_rank >= torch.cuda.device_count():
            raise DpirError(f"LOCAL_RANK {env.local_rank} but only {torch.cuda.device_count()} GPUs are visible; "
                            f"start at most that many processes per node (--nproc_per_node)")
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return env, device


def all_reduce_mean(tensors: list[torch.Tensor], env: DistEnv) -> None:
    """Average ``tensors`` in place over the processes, as one flat all-reduce (one message per step)."""
    if env.world == 1 or not tensors:
        return
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= env.world
    offset = 0
    for t in tensors:
        t.copy_(flat[offset: offset + t.numel()].view_as(t))
        offset += t.numel()


def broadcast_object(obj, env: DistEnv):
    """Rank 0's ``obj`` on every rank."""
    if env.world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(env: DistEnv) -> None:
    if env.world > 1:
        import torch.distributed as dist

        dist.barrier()


def torchrun_command(gpus: int, argv: list[str]) -> list[str]:
    """The torchrun line of ``dpir train --gpus N``: one node, N processes, each ``dpir <argv>``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
            "-m", "dpir", *argv]


def launch(gpus: int, argv: list[str]) -> int:
    """Run ``dpir <argv>`` in ``gpus`` processes under torchrun; returns its exit status."""
    if not (isinstance(gpus, int) and gpus >= 1):
        raise DpirError(f"--gpus must be a positive integer, got {gpus!r}")
    have = torch.cuda.device_count()
    if gpus > have:
        raise DpirError(f"--gpus {gpus} asks for more GPUs than this machine shows ({have} visible"
                        f"{'; CUDA_VISIBLE_DEVICES=' + os.environ['CUDA_VISIBLE_DEVICES'] if 'CUDA_VISIBLE_DEVICES' in os.environ else ''}); "
                        f"use --gpus {max(have, 1)} or fewer" if have else
                        f"--gpus {gpus}: no CUDA GPU is visible here; drop --gpus to train on this machine's device")
    if distributed_env() is not None:
        raise DpirError("--gpus inside a torchrun launch would start processes within processes; drop --gpus "
                        "(torchrun's --nproc_per_node sets the count)")
    return subprocess.call(torchrun_command(gpus, argv))
