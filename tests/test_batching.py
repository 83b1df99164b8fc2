"""--batch-size left out: probed on the first regions, recorded, reused on --resume, skipped when given."""

import h5py
import pytest
import torch

import seqlift.pipeline
from seqlift import batching
from seqlift.batching import probe_batch_size
from seqlift.errors import UsageError

from cli_helpers import run
from test_resume import cli_args, fragments, interrupt_after_first_batch


class FakeClock:
    """A clock that each call ``call(b)`` advances by ``seconds(b)``."""

    def __init__(self, seconds):
        self.now, self.seconds, self.calls = 0.0, seconds, []

    def __call__(self):
        return self.now

    def call(self, b):
        self.calls.append(b)
        self.now += self.seconds(b)


def test_cpu_probe_keeps_the_largest_near_the_fastest_and_stops_once_slower():
    # regions/s: 32 -> 320, 64 -> 640, 128 -> 600 (within 10%: chosen), 256 -> 400 (slower than 0.7 x 640: stop)
    clock = FakeClock(lambda b: {32: 0.1, 64: 0.1, 128: 128 / 600, 256: 0.64}.get(b, 10.0))
    probe = probe_batch_size(clock.call, 10**5, torch.device("cpu"), clock=clock)
    assert probe.batch_size == 128
    assert clock.calls == [32, 32, 32, 64, 64, 128, 128, 256, 256]  # a warm-up call, then each size twice
    assert probe.summary.startswith("cpu, largest within 10% of the fastest") and "64: 640" in probe.summary
    noisy = iter([0.1, 0.4, 0.2, 0.2, 0.8] + [10.0] * 10)  # the faster of two timings counts: 32 -> 160, 64 -> 320
    clock = FakeClock(lambda b: next(noisy))
    assert probe_batch_size(clock.call, 10**5, torch.device("cpu"), clock=clock).batch_size == 64


def test_cpu_probe_never_exceeds_the_regions_and_keeps_to_its_budget():
    clock = FakeClock(lambda b: 0.01 * b)  # every size equally fast: the largest
    assert probe_batch_size(clock.call, 6, torch.device("cpu"), clock=clock).batch_size == 6
    assert set(clock.calls) == {6}
    slow = FakeClock(lambda b: 0.0375 * b)  # 32 regions take 1.2 s twice, so 64 would end past the budget of 3 s
    probe_batch_size(slow.call, 10**5, torch.device("cpu"), clock=slow)
    assert slow.calls == [32, 32, 32]
    flat = FakeClock(lambda b: 0.01 * b**0.5)  # larger is always faster: every size, the largest chosen
    assert probe_batch_size(flat.call, 10**6, torch.device("cpu"), clock=flat).batch_size == 256
    assert flat.calls == [32] + [b for b in (32, 64, 128, 256) for _ in range(2)]


def test_cpu_probe_of_a_short_run_takes_a_small_share_of_it():
    """4096 regions at about 450 a second (the DemoCNN here): a probe of up to 3 s, 2 s as timed, took a sixth
    of a 12 s run and was thrown away. It now stops once the next size would take it past 5% of the run."""
    clock = FakeClock(lambda b: b / 450)  # 4096 regions: 9.1 s of model time, so 0.46 s of probe at most
    probe = probe_batch_size(clock.call, 4096, torch.device("cpu"), clock=clock)
    assert clock.calls == [32, 32, 32, 64, 64] and probe.batch_size == 64  # 128 twice would end at 0.85 s
    assert clock.now - 32 / 450 <= 0.05 * 4096 / 450 and "at most 0.46 s" in probe.summary
    clock = FakeClock(lambda b: b / 450)  # 300k regions: the 3 s budget, every size within it
    assert probe_batch_size(clock.call, 300_000, torch.device("cpu"), clock=clock).batch_size == 256
    assert clock.calls == [32] + [b for b in (32, 64, 128, 256) for _ in range(2)]


def test_gpu_probe_keeps_the_largest_that_fits(monkeypatch):
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)

    def call(b):
        calls.append(b)
        if b > 100:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    calls = []
    probe = probe_batch_size(call, 10_000, torch.device("cuda:1"))
    assert probe.batch_size == 64 and calls == [16, 32, 64, 128]
    assert "out of memory at 128" in probe.summary
    calls = []  # the first size does not fit: halve it
    monkeypatch.setattr(batching, "GPU_START", 512)
    assert probe_batch_size(call, 10_000, torch.device("cuda")).batch_size == 64 and calls == [512, 256, 128, 64]
    calls = []
    assert probe_batch_size(call, 40, torch.device("cuda")).batch_size == 40 and calls == [40]
    with pytest.raises(UsageError, match="one region with its references does not fit"):
        probe_batch_size(lambda b: call(1000), 10, torch.device("cuda"))


def attrs(path):
    with h5py.File(path, "r") as h5:
        return dict(h5.attrs)


def test_the_size_chosen_is_recorded(data):
    out = data["dir"] / "auto.h5"
    r = run(*cli_args(data, data["bed"], out))
    assert r.exit_code == 0, r.output
    a = attrs(out)
    assert a["batch_size"] == 6  # the candidates, capped at the 6 regions
    assert a["batch_size_probe"].startswith("cpu, largest within 10% of the fastest, regions/s by batch size {6: ")


def test_a_given_batch_size_is_not_probed(data, monkeypatch):
    def no_probe(*args, **kwargs):
        raise AssertionError("probed although --batch-size was given")

    monkeypatch.setattr(seqlift.pipeline, "probe_batch_size", no_probe)
    out = data["dir"] / "given.h5"
    r = run(*cli_args(data, data["bed"], out, "-b", 3))
    assert r.exit_code == 0, r.output
    assert attrs(out)["batch_size"] == 3 and attrs(out)["batch_size_probe"] == "given"


def test_resume_reuses_the_recorded_size_without_probing(data, monkeypatch):
    out = data["dir"] / "r.h5"
    monkeypatch.setattr(
        seqlift.pipeline, "probe_batch_size", lambda call, n, device: batching.Probe(2, "cpu, fastest (fake)")
    )
    restore = interrupt_after_first_batch(monkeypatch)
    assert run(*cli_args(data, data["bed"], out)).exit_code == 1
    restore()
    assert [f.name for f in fragments(out)] == ["rows-0000000000-0000000002.npz"]

    def no_probe(*args, **kwargs):
        raise AssertionError("probed on --resume")

    monkeypatch.setattr(seqlift.pipeline, "probe_batch_size", no_probe)
    r = run(*cli_args(data, data["bed"], out, "--resume"))
    assert r.exit_code == 0, r.output
    a = attrs(out)
    assert a["batch_size"] == 2 and a["batch_size_probe"] == "resumed: cpu, fastest (fake)"


def test_an_existing_output_is_refused_before_the_probe(data, monkeypatch):
    out = data["dir"] / "exists.h5"
    out.write_text("done before")
    monkeypatch.setattr(
        seqlift.pipeline, "probe_batch_size", lambda *a, **k: (_ for _ in ()).throw(AssertionError("probed"))
    )
    r = run(*cli_args(data, data["bed"], out))
    assert r.exit_code == 1 and "exists; use --force" in r.output, r.output
