"""--batch-size left out: probed on the first regions, recorded, reused on --resume, skipped when given."""

import h5py
import pytest
import torch

import seqlift.pipeline
from seqlift import batching
from seqlift.batching import probe_batch_size
from seqlift.errors import SeqliftError

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


def test_cpu_probe_keeps_the_fastest_and_stops_once_slower():
    # regions/s: 4 -> 40, 8 -> 80, 16 -> 160, 32 -> 100 (slower: stop), never 64 or 128
    clock = FakeClock(lambda b: {4: 0.1, 8: 0.1, 16: 0.1, 32: 0.32}.get(b, 10.0))
    probe = probe_batch_size(clock.call, 1000, torch.device("cpu"), clock=clock)
    assert probe.batch_size == 16
    assert clock.calls == [4, 4, 8, 16, 32]  # a warm-up call, then each size once
    assert probe.summary.startswith("cpu, fastest") and "16: 160" in probe.summary


def test_cpu_probe_never_exceeds_the_regions_and_keeps_to_its_budget():
    clock = FakeClock(lambda b: 0.01 * b)  # every size equally fast: ties go to the smaller
    assert probe_batch_size(clock.call, 6, torch.device("cpu"), clock=clock).batch_size == 4
    assert max(clock.calls) == 6
    slow = FakeClock(lambda b: 0.3 * b)  # 4 regions take 1.2 s, so 8 would end past the budget of 3 s
    probe_batch_size(slow.call, 1000, torch.device("cpu"), clock=slow)
    assert slow.calls == [4, 4]
    flat = FakeClock(lambda b: 0.02 * b ** 0.5)  # larger is always faster: stops where 2x would overrun
    probe_batch_size(flat.call, 10**6, torch.device("cpu"), clock=flat)
    assert flat.calls == [4, 4, 8, 16, 32, 64, 128]


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
    with pytest.raises(SeqliftError, match="one region with its references does not fit"):
        probe_batch_size(lambda b: call(1000), 10, torch.device("cuda"))


def attrs(path):
    with h5py.File(path, "r") as h5:
        return dict(h5.attrs)


def test_the_size_chosen_is_recorded(data):
    out = data["dir"] / "auto.h5"
    r = run(*cli_args(data, data["bed"], out))
    assert r.exit_code == 0, r.output
    a = attrs(out)
    assert a["batch_size"] in (4, 6)  # the candidates, capped at the 6 regions
    assert a["batch_size_probe"].startswith("cpu, fastest of regions/s by batch size {4: ")


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
    monkeypatch.setattr(seqlift.pipeline, "probe_batch_size",
                        lambda call, n, device: batching.Probe(2, "cpu, fastest (fake)"))
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
    monkeypatch.setattr(seqlift.pipeline, "probe_batch_size",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("probed")))
    r = run(*cli_args(data, data["bed"], out))
    assert r.exit_code == 1 and "exists; use --force" in r.output, r.output
