"""Several processes, one queue: `accelerate launch` or `torchrun` start N copies of train.py; rank 0 runs the
product as one process would (the lock, intake, queue moves, state.json, commits, the gate, live evaluation,
self-correction, every log) and the others only train, in step with it.

    rank 0                                   rank 1..N-1 (daemon/follower.py)
    claim a file, prepare it                 receive() ... waits for the next message
    hand_over({"op": "train", examples}) ->  -> the examples, the resume checkpoint
    share(model)                        ->   <- the adapter as rank 0 holds it
    trainer.train() under DDP           <->  trainer.train() under DDP (each its share of every batch)
      each step: StepTogether in engine.py (agree to stop, or wait while rank 0 evaluates)
    judge, commit (alone)                    receive() ...
    poll() when idle, release() at the end   "idle" / "stop" -> exit 0

The job messages and the step agreement travel on gloo groups of their own with their own timeouts, so a rank
waiting for rank 0's evaluation waits at an explicit sync point, never inside the gradient all-reduce (a known
cause of NCCL timeouts: open-r1#620). A rank that dies breaks the group: the others raise DistributedFault at their
next collective (gloo sees the closed socket at once; otherwise `daemon.distributed_timeout_seconds`) and exit
non-zero; the queue keeps every file, and a restart resumes as after any crash.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from core.errors import ProjectError

# torch is imported where a method needs it: a launch refused for a bad variable says so before torch loads

IDLE_TIMEOUT = timedelta(days=7)  # a rank waiting for rank 0's next file: sampling or analysis may take hours


class DistributedFault(ProjectError):
    """The process group broke (a rank died, the network failed): every rank stops; the file is not at fault."""


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    stopping: bool = False  # some rank asked to stop (a SIGTERM it got): rank 0 stops the daemon
    broken: bool = False
    _groups: dict = field(default_factory=dict, repr=False)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "World":
        """Where this process stands, from the variables that torchrun and accelerate launch set."""
        try:
            size = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as e:
            raise ProjectError(f"WORLD_SIZE, RANK and LOCAL_RANK must be integers ({e}); start several processes "
                               "with accelerate launch or torchrun, which set them") from e
        if size < 1 or not 0 <= rank < size:
            raise ProjectError(f"RANK {rank} is not in a WORLD_SIZE of {size}; start several processes with "
                               "accelerate launch or torchrun, which set both")
        return _WORLD.get((rank, size)) or cls(rank, size, local)

    # -- joining ----------------------------------------------------------------------------------

    def join(self, *, timeout_seconds: float, precision: str) -> None:
        """Join the process group (NCCL on CUDA, gloo on the CPU) and make the two control groups; a rank that
        cannot is refused with what to check."""
        if self.size == 1 or (self.rank, self.size) in _WORLD:
            return
        for variable, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
            if os.environ.get(variable, "").lower() == "true":
                raise ProjectError(
                    f"{name} is not supported yet: rank 0 evaluates, generates and saves the adapter on its own, "
                    f"which needs the whole model on rank 0, and {name} shards it across the ranks. Launch with DDP "
                    "(examples/accelerate/ddp.yaml): a LoRA adapter's optimizer state is small; for a model too "
                    "large for one GPU, load it in 4 bits (model.load_in_4bit)")
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise ProjectError(f"rank {self.rank} of {self.size}: {' and '.join(missing)} not set; start the "
                               "processes with accelerate launch or torchrun, which set them")
        import torch
        import torch.distributed as dist

        from core.device import plan_device

        backend = "gloo"
        if plan_device(precision).device == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise ProjectError(f"rank {self.rank} has LOCAL_RANK {self.local_rank} but this machine shows "
                                   f"{torch.cuda.device_count()} GPUs: start at most one process per GPU "
                                   "(--num_processes / --nproc_per_node)")
            torch.cuda.set_device(self.local_rank)
            backend = "nccl"
        timeout = timedelta(seconds=timeout_seconds)
        try:
            dist.init_process_group(backend, rank=self.rank, world_size=self.size, timeout=timeout)
            self._groups = {"steps": dist.new_group(backend="gloo", timeout=timeout),
                            "jobs": dist.new_group(backend="gloo", timeout=max(timeout, IDLE_TIMEOUT))}
        except Exception as e:
            raise ProjectError(f"rank {self.rank} of {self.size} could not join the process group ({backend}, "
                               f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}): {type(e).__name__}: {e}. "
                               "Check that every rank was started with the same world size and reaches "
                               "MASTER_ADDR") from e
        _WORLD[(self.rank, self.size)] = self

    # -- messages (rank 0 -> the others) ---------------------------------------------------------

    def hand_over(self, message: dict) -> None:
        """Rank 0: the next thing to do, to every other rank; learns whether any of them asked to stop."""
        if self.size > 1:
            self._exchange(message, stop=False)

    def poll(self, *, stop: bool) -> bool:
        """Rank 0, between files: an idle message (so a rank's stop request is heard while no file trains);
        True when some rank asked to stop."""
        if self.size > 1:
            self._exchange({"op": "idle"}, stop=stop)
        return self.stopping

    def release(self) -> None:
        """Rank 0, on its way out however it leaves: the others stop too (not if the group is broken)."""
        if self.size > 1 and not self.broken:
            self._exchange({"op": "stop"}, stop=True)

    def leave(self) -> None:
        """Every rank, last: the process group is taken down before the interpreter exits (left to exit, its
        threads can abort the process after a clean run)."""
        if self.size == 1 or (self.rank, self.size) not in _WORLD:
            return
        import torch.distributed as dist

        _WORLD.pop((self.rank, self.size))
        if not self.broken:
            dist.destroy_process_group()

    def receive(self, *, stop: bool) -> dict:
        """Another rank: wait for rank 0's next message, telling it whether this rank was asked to stop."""
        return self._exchange(None, stop=stop)

    def _exchange(self, message: dict | None, *, stop: bool) -> dict:
        import torch
        import torch.distributed as dist

        box = [message]
        with self._collective("waiting for rank 0's next file" if message is None else "handing over a file"):
            dist.broadcast_object_list(box, src=0, group=self._groups["jobs"])
            flag = torch.tensor([int(stop)])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._groups["jobs"])
        self.stopping = self.stopping or bool(flag.item())
        return box[0]

    # -- in training -----------------------------------------------------------------------------

    def share(self, model) -> None:
        """Every rank starts the file with rank 0's adapter (it may have put a rejected version back)."""
        import torch
        import torch.distributed as dist

        if self.size == 1:
            return
        with self._collective("sharing the adapter"), torch.no_grad():
            for _, p in sorted(((n, p) for n, p in model.named_parameters() if p.requires_grad), key=lambda x: x[0]):
                dist.broadcast(p.data, src=0)

    def agree(self, *, stop: bool, log: bool) -> tuple[bool, bool]:
        """Every rank, once per optimizer step: whether any rank asks to stop, and to log (logging gathers the
        loss from every rank). Ranks wait here while rank 0 evaluates between steps (the steps group's timeout)."""
        import torch
        import torch.distributed as dist

        flags = torch.tensor([int(stop), int(log)])
        with self._collective("agreeing on the step"):
            dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self._groups["steps"])
        stop, log = bool(flags[0]), bool(flags[1])
        self.stopping = self.stopping or stop
        return stop, log

    @contextmanager
    def _collective(self, what: str):
        try:
            yield
        except Exception as e:
            raise self.fault(what, e) from e

    def fault(self, what: str, error: BaseException) -> DistributedFault:
        self.broken = True
        first = str(error).splitlines()[0] if str(error) else ""
        return DistributedFault(f"rank {self.rank} of {self.size}: {what} failed ({type(error).__name__}: {first}): "
                                "another rank stopped, or the network failed. The queue keeps every file; start "
                                "all ranks again")


_WORLD: dict = {}  # the joined World of this process, so every caller sees its groups and flags
