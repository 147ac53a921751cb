"""The data-parallel workers of one trial: one process per worker, gradients averaged
explicitly (no Ray here, and nothing here starts a process).

Who starts the processes and the ``torch.distributed`` process group is someone else's
job: Ray Train's TorchTrainer in a study (:mod:`harness.trainable`; gloo on CPU, NCCL on
CUDA), ``torch.multiprocessing`` in the tests. Given that group, :class:`Workers` is all
a trial needs:

- **the batch.** Every worker draws the *whole* effective batch (batch_size x workers x
  accumulation) from the same seeded sampler and trains on its own slice of it
  (:meth:`Workers.own`), so N workers see exactly the samples one process with the whole
  batch would, and the sampler's state, checkpointed by rank 0, is every worker's;
- **the gradients.** After a network's backward passes, one flat all-reduce averages
  its gradients (:meth:`Workers.average_gradients`), as stylegan2-ada's training loop
  does, rather than DistributedDataParallel: the loop toggles ``requires_grad`` on D
  between the D and the G step and runs D in G's graph, which DDP's hooks do not follow.
  For a model without batch norm, N workers' averaged gradients equal one process's
  gradients on the whole batch (up to float summation order);
- **the decisions.** Loss terms are averaged (:meth:`Workers.mean_stats`), so every
  worker sees the same losses and takes the same divergence and fp16-skip decisions; a
  variant whose state follows batch statistics (ADA's sign statistic, LeCam's anchors)
  reduces them through ``self.workers`` (``harness.interfaces``); a time budget's stop is
  rank 0's (:meth:`Workers.agree`);
- **the record.** Rank 0 alone writes the trial's record, checkpoints and trackers; when
  a trial starts or resumes, rank 0's whole state (the checkpoint it loaded, or its fresh
  one) goes to every worker (:meth:`Workers.share`), so every rank resumes from the same
  checkpoint without reading the record;
- **the randomness of each worker** (augmentation, instance noise) differs: each rank's
  global RNGs are reseeded from (seed, rank, iteration) whenever the trial starts and
  after each checkpoint, so a resumed trial draws what an uninterrupted one would.

A one-process trial uses :data:`SOLO`: every method is then the identity, and the
trial computes exactly what it did before workers existed.
"""
from __future__ import annotations

import io
import random
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch import nn


class PeerLost(RuntimeError):
    """A collective failed: a peer worker (or the process group, which Ray Train tears
    down when a worker dies) is gone. The trial did not fail; its group is restarted."""


def _collective(op: str, *args: Any, **kwargs: Any) -> None:
    """``torch.distributed.<op>(*args)``, any failure of it raised as :class:`PeerLost`."""
    import torch.distributed as dist

    try:
        getattr(dist, op)(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - gloo/NCCL raise many kinds; all mean the group is gone
        raise PeerLost(f"{op} failed: {type(err).__name__}: {err}") from err


class Workers:
    """This process's place among a trial's data-parallel workers."""

    def __init__(self, rank: int = 0, world: int = 1, device: Optional[torch.device] = None):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a world of {world}")
        self.rank, self.world = rank, world
        # where collective tensors live: the CPU for gloo, the worker's GPU for NCCL
        self.device = device or torch.device("cpu")
        self.shares = 0  # how many times share() ran (rank 0 knows whether the others got its state)

    @classmethod
    def from_process_group(cls) -> "Workers":
        """The workers of the initialised default ``torch.distributed`` group (SOLO if none)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return SOLO
        device = torch.device("cpu")
        if dist.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        return cls(dist.get_rank(), dist.get_world_size(), device)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def writer(self) -> bool:
        """Whether this worker writes the trial's record (rank 0)."""
        return self.rank == 0

    def describe(self) -> Dict[str, Any]:
        return {"workers": self.world, "rank": self.rank}

    def lost(self, err: BaseException) -> bool:
        """Whether ``err`` says a peer worker is gone (a collective failed, its connection
        closed, the group was torn down): the trial did not fail, its workers are restarted
        from the last checkpoint."""
        if not self.distributed:
            return False
        import torch.distributed as dist

        return isinstance(err, (PeerLost, getattr(dist, "DistError", PeerLost))) or any(
            sign in str(err) for sign in ("Connection closed by peer", "process group has not been initialized"))

    # ------------------------------------------------------------------ the batch
    def own(self, per_worker: int) -> slice:
        """This worker's slice of a batch drawn whole for all workers."""
        return slice(self.rank * per_worker, (self.rank + 1) * per_worker)

    # -------------------------------------------------------------- collectives
    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the workers (a new tensor; the same one when alone)."""
        if not self.distributed:
            return tensor

        out = tensor.detach().to(self.device, torch.float32, copy=True)
        _collective("all_reduce", out)
        return out.to(tensor.device, tensor.dtype)

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` averaged over the workers (each worker's share of the batch is equal)."""
        return tensor if not self.distributed else self.sum(tensor) / self.world

    def average_gradients(self, module: nn.Module) -> None:
        """Average ``module``'s gradients over the workers: one flat all-reduce."""
        if not self.distributed:
            return

        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        _collective("all_reduce", flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def mean_stats(self, stats: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """A step's loss terms averaged over the workers (one all-reduce)."""
        if not self.distributed or not stats:
            return stats
        values = self.mean(torch.stack([v.reshape(()).float() for v in stats.values()]))
        return {k: values[i] for i, k in enumerate(stats)}

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag``, on every worker."""
        if not self.distributed:
            return flag

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        _collective("broadcast", t, src=0)
        return bool(t.item())

    def share(self, data: Optional[bytes]) -> bytes:
        """Rank 0's ``data`` (bytes), on every worker (the others pass None)."""
        if not self.distributed:
            assert data is not None
            return data

        self.shares += 1
        size = torch.tensor([len(data) if self.writer else 0], dtype=torch.int64, device=self.device)
        _collective("broadcast", size, src=0)
        if self.writer:
            buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device)
        else:
            buffer = torch.empty(int(size.item()), dtype=torch.uint8, device=self.device)
        _collective("broadcast", buffer, src=0)
        return data if self.writer else bytes(buffer.cpu().numpy())

    # -------------------------------------------------------------- randomness
    def reseed(self, seed: int, iteration: int) -> None:
        """Give this worker its own global RNG streams at ``iteration`` (alone: untouched,
        so a one-process trial draws exactly what it always did)."""
        if not self.distributed:
            return
        mixed = (int(seed) * 1_000_003 + self.rank) * 1_000_033 + int(iteration)
        mixed %= 2 ** 63
        random.seed(mixed)
        np.random.seed(mixed % 2 ** 32)
        torch.manual_seed(mixed)


SOLO = Workers()


def pack_state(finished: Optional[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> bytes:
    """What rank 0 shares when a trial starts: the finished result, or its whole state."""
    buffer = io.BytesIO()
    torch.save({"finished": finished or {}, "state": state or {}}, buffer)
    return buffer.getvalue()


def unpack_state(data: bytes) -> Dict[str, Any]:
    """:func:`pack_state`'s payload, loaded safely (tensors and plain data only)."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def batch_norm_layers(module: nn.Module) -> int:
    """How many batch-norm layers ``module`` has (what ``sync_batchnorm`` would synchronise)."""
    return sum(1 for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def attach(models: Any, workers: Workers, sync_batchnorm: bool = False) -> None:
    """Make a trial's built parts work as one of ``workers``: the steps and the variants
    that reduce batch statistics get the workers; with ``sync_batchnorm``, G's and D's
    batch norms become SyncBatchNorm (the same parameters, so the optimizers keep them)."""
    models.workers = workers
    models.augment.workers = workers
    for reg in models.regularizers:
        reg.workers = workers
    if sync_batchnorm and workers.distributed:
        for name in ("G", "D"):
            setattr(models, name, nn.SyncBatchNorm.convert_sync_batchnorm(getattr(models, name)))
