"""One inference job over the processes of a ``torch.distributed`` group: the folder lock, the shares, the merge.

A job started by ``torchrun`` (the bundles' ``multi_gpu_inference.json``) runs one ``FundusInferenceRunner`` per
process. Its main rank (rank 0) holds the output folder (``records.folder_lock``), checks the folder's settings and
plans what is left to do, exactly as one process does; every rank then segments its share of that plan and records
its rows in its own table beside ``summary.csv``; at the end the main rank merges the tables, the failures and the
manifest once. Collectives go through PyTorch's own ``broadcast_object_list`` and ``all_gather_object``: no
scheduler of the project's own.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch.distributed as dist

from monai_exudate.inference.records import FolderInUseError, folder_lock
from monai_exudate.inference.run_state import InferenceReport

__all__ = ["JobRanks", "job_folder_lock", "merged_report"]

T = TypeVar("T")

# The ranks meet twice, at the start (the plan) and at the end (the merge), where the first to finish waits for the
# slowest: with uneven shares or a rank stopped early (strict) that can be hours, far past NCCL's 10-minute watchdog.
# A dead rank is not waited for: torchrun stops every rank of the job when one exits with an error.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class JobRanks:
    """The calling process's place in its inference job: ``rank`` of ``world_size`` processes (0 of 1 alone).

    ``group``: the process group the job's small messages (plan, reports) go through.
    """

    rank: int = 0
    world_size: int = 1
    group: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of_process_group(cls) -> JobRanks:
        """This process's rank and the job's size in the initialised default process group (``torchrun`` and the
        bundles' ``multi_gpu_inference.json``); every rank must call it, at the same point.

        The messages go through a gloo group of the same ranks with ``COLLECTIVE_TIMEOUT``, whatever the default
        group's backend: on CPU tensors, so NCCL's device and watchdog play no part.
        """
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "distributed inference needs an initialised torch.distributed process group: start it with torchrun "
                "and the bundle's multi_gpu_inference.json (or set distributed to false)"
            )
        group = dist.new_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT)
        return cls(dist.get_rank(), dist.get_world_size(), group)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_sharded(self) -> bool:
        return self.world_size > 1

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``: every ``world_size``-th from index ``rank`` on, in the given order, as
        ``DistributedSampler(shuffle=False)`` deals them; every item goes to exactly one rank."""
        return list(items[self.rank :: self.world_size])

    def from_main(self, value: T) -> T:
        """The main rank's ``value`` on every rank (the other ranks' values are ignored)."""
        if not self.is_sharded:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, by rank, on every rank."""
        if not self.is_sharded:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value, group=self.group)
        return values


@contextlib.contextmanager
def job_folder_lock(folder: str | os.PathLike, run_id: str, ranks: JobRanks) -> Iterator[None]:
    """Hold ``folder`` for one job: the main rank takes ``records.folder_lock`` and every rank learns the outcome.

    A folder held by another job (of any number of processes) refuses the whole job with ``FolderInUseError`` on
    every rank; the ranks of the job holding it never refuse each other. Any other error taking the lock (a file
    system without ``flock``, no permission) stops every rank too, naming it. The lock is released when the main
    rank leaves the block, after the merge, or by the kernel when the main rank dies (torchrun then stops the job's
    other ranks).
    """
    with contextlib.ExitStack() as held:
        error: Exception | None = None
        if ranks.is_main:
            try:
                held.enter_context(folder_lock(folder, run_id))
            except Exception as err:
                if not ranks.is_sharded:
                    raise
                error = err
        refusal = ranks.from_main(None if error is None else (isinstance(error, FolderInUseError), str(error)))
        if error is not None:
            raise error
        if refusal is not None:
            in_use, text = refusal
            raise FolderInUseError(text) if in_use else RuntimeError(f"the job could not take {folder}: {text}")
        yield


def merged_report(reports: Sequence[InferenceReport], found: int) -> InferenceReport:
    """One report of the job from its ranks' reports (the main rank's holds the planning's skips and failures)."""
    first = reports[0]
    return InferenceReport(
        processed=sum(r.processed for r in reports),
        skipped=sum(r.skipped for r in reports),
        failed=[failure for r in reports for failure in r.failed],
        output_dir=first.output_dir,
        found=found,
        run_id=first.run_id,
    )
