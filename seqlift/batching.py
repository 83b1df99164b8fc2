"""Choosing ``--batch-size`` when it is not given: a short probe on the first regions.

On the CPU the fastest batch size is not the largest: past the point where
the model's work fills the cores, bigger batches only spill the caches. The
probe times model calls at each candidate size, from small to large, and keeps
the largest within 10% of the most regions per second. On a GPU more regions per call are
faster until memory runs out, so the probe doubles the batch until a call runs
out of GPU memory (or reaches :data:`GPU_MAX`) and keeps the largest that fit.

Either way the probe stops after about :data:`BUDGET_S` seconds of calls; on the CPU
also once it has spent :data:`RUN_SHARE` of the model time the run itself is
estimated to take (at the fastest rate timed so far), since a short run could not
win back a longer probe. The
size chosen is recorded with the results (attribute ``batch_size``, and how it
was chosen in ``batch_size_probe``), and ``--resume`` reuses it without probing:
the batches of a run are its unit of resumption.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import UsageError

#: Candidate regions per call on the CPU, tried from small to large (from 32, the size used before the probe:
#: smaller batches pay the per-batch costs outside the model, a fragment written and flushed, more often).
CPU_SIZES = (32, 64, 128, 256)
#: The GPU probe starts here and doubles up to GPU_MAX regions per call.
GPU_START, GPU_MAX = 16, 1024
#: Seconds of probe calls: no larger size is tried when its call would end past them (CPU) or after them (GPU).
BUDGET_S = 3.0
#: On the CPU, no larger size is tried when its call would end past this share of the run's estimated model time.
RUN_SHARE = 0.05
#: On the CPU, stop once a size is this much slower than the best so far.
_SLOWER = 0.7
#: On the CPU, the largest size at least this fast relative to the best is chosen: each batch also costs
#: a fixed amount outside the model (a fragment written and flushed, a thread hand-over), which the timed
#: calls do not see, and one timing on a busy machine is noisy.
_NEAR_BEST = 0.9
#: Timed calls per CPU size; the fastest counts.
_REPEATS = 2


@dataclass(frozen=True)
class Probe:
    """The batch size chosen, and a one-line account of how (stored as ``batch_size_probe``)."""

    batch_size: int
    summary: str


def probe_batch_size(call, n_regions: int, device, budget_s: float = BUDGET_S, clock=time.perf_counter) -> Probe:
    """The batch size to score with, from timed calls ``call(b)`` that score the first ``b`` regions.

    Parameters
    ----------
    call : callable
        ``call(b)`` runs the model on ``b`` regions, as a real batch would be
        scored (the data prepared beforehand, so only the model is timed).
    n_regions : int
        Regions to score; no larger batch is tried.
    device : torch.device
        ``cuda`` probes memory, anything else speed.
    budget_s : float
        Seconds of calls after which no larger size is tried.
    """
    n_regions = max(1, int(n_regions))
    if getattr(device, "type", str(device)) == "cuda":
        return _probe_gpu(call, n_regions, device, budget_s, clock)
    return _probe_cpu(call, n_regions, budget_s, clock)


def _probe_cpu(call, n_regions, budget_s, clock) -> Probe:
    sizes = sorted({min(b, n_regions) for b in CPU_SIZES})
    call(sizes[0])  # warm-up: first-call costs (allocator, lazy init) are not the batch size's
    rates, spent = {}, 0.0
    for b, following in zip(sizes, sizes[1:] + [None]):
        times = []
        for _ in range(_REPEATS):
            t0 = clock()
            call(b)
            times.append(max(clock() - t0, 1e-9))
        spent += sum(times)
        rates[b] = b / min(times)
        if rates[b] < _SLOWER * max(rates.values()):
            break
        budget = min(budget_s, RUN_SHARE * n_regions / max(rates.values()))
        if following is not None and spent + sum(times) * following / b > budget:  # the next would overrun
            break
    best = max(rates.values())
    chosen = max(b for b, rate in rates.items() if rate >= _NEAR_BEST * best)
    shown = ", ".join(f"{b}: {r:.3g}" for b, r in rates.items())
    return Probe(
        chosen,
        f"cpu, largest within 10% of the fastest, regions/s by batch size {{{shown}}} in {spent:.2g} s "
        f"(at most {budget:.2g} s: the lesser of {budget_s:g} s and {RUN_SHARE:.0%} of the run's estimated model time)",
    )


def _probe_gpu(call, n_regions, device, budget_s, clock) -> Probe:
    import torch

    fits, spent, oom_at, b = [], 0.0, None, min(GPU_START, n_regions)
    while True:
        try:
            t0 = clock()
            call(b)
            torch.cuda.synchronize(device)
            spent += clock() - t0
            fits.append(b)
        except torch.cuda.OutOfMemoryError:
            oom_at = b
        finally:
            torch.cuda.empty_cache()
        if not fits:  # even the first size is too large: halve it
            if b == 1:
                raise UsageError(
                    f"one region with its references does not fit in the memory of {device}; "
                    "use fewer --n-refs, or another GPU"
                )
            b //= 2
            continue
        following = min(2 * fits[-1], GPU_MAX, n_regions)
        if oom_at is not None or following == fits[-1] or spent >= budget_s:
            break
        b = following
    stop = (
        f"out of memory at {oom_at}"
        if oom_at is not None
        else f"the {budget_s:g} s budget"
        if spent >= budget_s
        else f"the limit of {min(GPU_MAX, n_regions)}"
    )
    return Probe(fits[-1], f"{device}, largest that fit in memory of {fits} (stopped by {stop}) in {spent:.2g} s")
