"""Time seqlift's DeepLIFT engine against tangermeme, captum and a plain gradient pass.

Every tool explains output 0 of the same seeded, randomly initialised model
for the same one-hot regions, each against the same K dinucleotide shuffles,
and returns hypothetical contributions averaged over the references, shape
(N, 4, L). The batch size is swept in regions per model call; a call then
holds ``regions * K`` (input, reference) pairs for every tool:

- seqlift: ``prepare(model, L)`` once (not timed), then ``engine.run(X, R)``
  per batch of regions. A call runs ``regions * (K + 1)`` rows: each input
  once, then its references.
- seqlift-compiled: the same with ``prepare(..., compile=True)``, which fuses
  the ReLU multipliers with ``torch.compile`` (compiled in the warm-up call).
- tangermeme: ``deep_lift_shap(model, X, references=R, hypothetical=True,
  batch_size=regions * K)``; its ``batch_size`` counts pairs, and each pair is
  two rows (input copy and reference), so ``2 * regions * K`` rows.
- captum: ``DeepLift(model).attribute(x, baselines=r)`` on the pairs laid out
  row by row (each input repeated K times), with a hypothetical-contribution
  function, then the mean over references; ``2 * regions * K`` rows. This is
  what ``DeepLiftShap`` does for one input at a time, batched over regions,
  because ``DeepLiftShap`` shares one set of baselines across all its inputs.
- gradient: forward and backward of the plain model over the ``regions * K``
  reference rows, gradient with respect to the input (a saliency pass over the
  same pairs): the floor for any backward-based method. On a CPU it runs with
  the glibc settings that seqlift's engine makes (``keep_freed_memory``), so
  that the ratio measures the engine's extra work and not the allocator
  (without them the pass takes up to a quarter longer on the BiLSTM).

Each (model, tool) runs in a fresh subprocess, which reports its peak memory
above the memory held after imports, model construction and data (peak RSS
from ``VmHWM`` on the CPU, the cumulative peak over the sweep, which runs
from the smallest batch up; ``torch.cuda.max_memory_allocated`` per batch on a
GPU). Each batch size is warmed up with one call, then the whole set of
regions is timed ``--repeats`` times and the median wall time reported, with
the process's mean CPU time (user + system, all threads) per run, which
moves less than wall time when other processes share the cores.

    python benchmarks/bench_deeplift.py            # the full run, 4-8 minutes on 2 CPU cores
    python benchmarks/bench_deeplift.py --quick    # a smoke run
"""

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

TOOLS = ("seqlift", "seqlift-compiled", "tangermeme", "captum", "gradient")
RESULTS = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------- models


class DilatedResidual(nn.Module):
    """``x + relu(conv(x))`` with a dilated kernel of 3 and 'same' padding."""

    def __init__(self, channels, dilation):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, dilation=dilation, padding=dilation)
        self.relu = nn.ReLU()

    def forward(self, x):
        return x + self.relu(self.conv(x))


class BPNetLike(nn.Module):
    """BPNet-like counts model: (N, 4, 2114) -> (N, 1).

    conv(4->64, k=21) -> ReLU -> 8 dilated residual layers (dilation 2, 4, .., 256)
    -> global average pool -> Linear(64, 1).
    """

    length = 2114

    def __init__(self, channels=64, layers=8):
        super().__init__()
        self.conv = nn.Conv1d(4, channels, 21, padding=10)
        self.relu = nn.ReLU()
        self.body = nn.Sequential(*[DilatedResidual(channels, 2**i) for i in range(1, layers + 1)])
        self.head = nn.Linear(channels, 1)

    def forward(self, x):
        return self.head(self.body(self.relu(self.conv(x))).mean(dim=-1))


def basset_like(outputs=164):
    """Basset-like model: (N, 4, 600) -> (N, outputs), full size (300/200/200 filters, 1000 hidden)."""

    def block(c_in, c_out, kernel, pool):
        return [nn.Conv1d(c_in, c_out, kernel), nn.BatchNorm1d(c_out), nn.ReLU(), nn.MaxPool1d(pool)]

    # length 600 -> conv 19: 582 -> pool 3: 194 -> conv 11: 184 -> pool 4: 46 -> conv 7: 40 -> pool 4: 10
    model = nn.Sequential(
        *block(4, 300, 19, 3),
        *block(300, 200, 11, 4),
        *block(200, 200, 7, 4),
        nn.Flatten(),
        nn.Linear(200 * 10, 1000),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(1000, 1000),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(1000, outputs),
    )
    model.length = 600
    return model


#: Models beyond the two above: the demo's recurrent and attention networks, at a genomic window length.
ZOO = ("bilstm", "attention")
MODELS = ("bpnet", "basset", *ZOO)


def build_model(name, device, seed=0):
    """Seeded, eval-mode float32 model ``name`` (bpnet, basset, bilstm or attention) on ``device``.

    Weights are He-initialised, so that outputs and their differences between
    a region and its shuffles are of order 0.1-1 rather than 1e-3, and batch
    norms get random statistics.
    """
    torch.manual_seed(seed)
    if name in ZOO:  # conv + BiLSTM (DanQ-like) and conv + transformer layer, 1000 bp
        from seqlift.demo.model import DemoAttention, DemoBiLSTM

        model = (DemoBiLSTM if name == "bilstm" else DemoAttention)(input_length=1000)
        model.length = 1000
        return model.to(device).eval()
    model = BPNetLike() if name == "bpnet" else basset_like()
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.to(device).eval()


def make_data(n, k, length, seed=0):
    """Random one-hot regions X, shape=(n, 4, length), and K dinucleotide shuffles of each, shape=(n, k, 4, length)."""
    from seqlift.references import dinucleotide_shuffle

    rng = np.random.default_rng(seed)
    X = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (n, length))].transpose(0, 2, 1).copy()
    R = dinucleotide_shuffle(X, n=k, seeds=np.arange(n) + seed)
    return X.astype(np.float32), R


# ---------------------------------------------------------------- tools


def hypothetical(m, r):
    """Hypothetical contributions ``m[c] - sum_c' m[c'] r[c']`` from multipliers ``m`` and references ``r``, shape=(B, 4, L)."""
    return m - (m * r).sum(dim=1, keepdim=True)


def make_runner(tool, model, length, device):
    """``run(X, R, regions_per_call) -> hypothetical (N, 4, L) or None`` for ``tool``; preparation is done here, untimed."""
    if tool in ("seqlift", "seqlift-compiled"):
        from seqlift.attribution import prepare

        # seqlift-compiled: the ReLU multipliers fused by torch.compile (compiled in the warm-up call)
        engine = prepare(model, length, device=device, compile=tool == "seqlift-compiled")
        return lambda X, R, b: np.concatenate(
            [engine.run(X[i : i + b], R[i : i + b], target=0).hypothetical for i in range(0, len(X), b)]
        )

    if tool == "tangermeme":
        from tangermeme.deep_lift_shap import deep_lift_shap

        def run(X, R, b):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its per-batch convergence warnings
                return deep_lift_shap(
                    model,
                    torch.from_numpy(X),
                    target=0,
                    references=torch.from_numpy(R),
                    hypothetical=True,
                    batch_size=b * R.shape[1],
                    warning_threshold=float("inf"),
                    device=device,
                ).numpy()

        return run

    if tool == "captum":
        from captum.attr import DeepLift

        explainer = DeepLift(model)

        def run(X, R, b):
            k, out = R.shape[1], []
            for i in range(0, len(X), b):
                x = torch.from_numpy(X[i : i + b]).to(device).repeat_interleave(k, dim=0)
                r = torch.from_numpy(R[i : i + b]).to(device).flatten(0, 1)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "Setting forward, backward hooks ..." on every call
                    (hyp,) = explainer.attribute(
                        (x,),
                        baselines=(r,),
                        target=0,
                        custom_attribution_func=lambda mult, inp, base: (hypothetical(mult[0], base[0]),),
                    )
                out.append(hyp.detach().reshape(-1, k, *hyp.shape[1:]).mean(dim=1).cpu())
            return torch.cat(out).numpy()

        return run

    if device == "cpu":
        from seqlift.attribution.chunking import keep_freed_memory

        keep_freed_memory()

    def run(X, R, b):
        for i in range(0, len(X), b):
            r = torch.from_numpy(R[i : i + b]).to(device).flatten(0, 1).requires_grad_(True)
            (g,) = torch.autograd.grad(model(r)[:, 0].sum(), r)
            g.cpu()  # copied back, as the other tools' scores are

    return run


# ---------------------------------------------------------------- one (model, tool) in its own process


def rss_mib():
    """Current resident set size of this process, in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib():
    """Peak resident set size of this process so far (``VmHWM``), in MiB.

    Not ``ru_maxrss``: on Linux a child started with fork and exec keeps its parent's peak there, so a worker
    would report at least the memory its parent held when it was started.
    """
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def cpu_seconds():
    """User plus system CPU time of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sync(device):
    """Wait for queued GPU work, so that it falls inside the timed region."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def worker(spec):
    """Time one tool on one model over the batch sizes of ``spec``; returns a dict and saves its scores."""
    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    model = build_model(spec["model"], device)
    X, R = make_data(spec["regions"], spec["refs"], model.length)
    run = make_runner(spec["tool"], model, model.length, device)
    cuda = device.startswith("cuda")
    base = torch.cuda.memory_allocated() if cuda else rss_mib()
    rows = []
    for b in spec["regions_per_call"]:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        run(X[:b], R[:b], b)  # warm-up: one model call at this batch size
        times, cpu = [], cpu_seconds()
        for _ in range(spec["repeats"]):
            sync(device)
            start = time.perf_counter()
            hyp = run(X, R, b)
            sync(device)
            times.append(time.perf_counter() - start)
        cpu = (cpu_seconds() - cpu) / spec["repeats"]
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else peak_rss_mib() - base
        rows.append(
            {
                "regions_per_call": b,
                "seconds": times,
                "median_s": float(np.median(times)),
                "cpu_s": cpu,
                "peak_mib": peak,
            }
        )
    if hyp is not None:
        np.save(spec["scores"], hyp)
    return {"model": spec["model"], "tool": spec["tool"], "sweep": rows}


def spawn(spec):
    """Run :func:`worker` for ``spec`` in a fresh Python process and return its result."""
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{spec['tool']} on {spec['model']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


# ---------------------------------------------------------------- accuracy and report


def delta_errors(model, X, R, hyp, device):
    """Summation-to-delta error per region, ``|sum(hyp * X) - (f(x) - mean_j f(r_j))|``, and the deltas themselves."""
    n, k = R.shape[:2]
    with torch.no_grad():
        f = lambda a: torch.cat(
            [model(torch.from_numpy(c).to(device))[:, 0].cpu() for c in np.array_split(a, max(1, len(a) // 64))]
        )
        delta = (f(X) - f(R.reshape(n * k, *R.shape[2:])).reshape(n, k).mean(dim=1)).double().numpy()
    return np.abs((hyp.astype(np.float64) * X).sum(axis=(1, 2)) - delta), delta


def ratio(a, b):
    return a / b if a and b else float("nan")


def summarise(name, results, scores, model, X, R, refs, device):
    """Throughput, ratios and accuracy for one model, as a dict.

    On the CPU the ratios are also given by CPU time (user + system), which
    counts work rather than waiting and so moves less on a shared machine.
    """
    clocks = [("", "median_s")] + ([] if device.startswith("cuda") else [(" (CPU time)", "cpu_s")])
    tools = {r["tool"]: {s["regions_per_call"]: s for s in r["sweep"]} for r in results}
    n = len(X)
    for sweep in tools.values():
        for s in sweep.values():
            s["regions_per_s"] = n / s["median_s"]
    sizes = sorted(set.intersection(*(set(s) for s in tools.values())))
    best = {t: max(s.values(), key=lambda v: v["regions_per_s"]) for t, s in tools.items()}

    def ratios(pick):
        """Ratios of seqlift to the others; ``pick(tool, key)`` gives the sweep entry to compare by ``key``."""
        out = {}
        for clock, key in clocks:
            for ours in ("seqlift", "seqlift-compiled"):
                sl = pick(ours, key)
                for peer in ("tangermeme", "captum", "gradient"):
                    other = pick(peer, key)
                    if sl and other and peer == "gradient":
                        out[f"{ours} time / gradient time{clock}"] = ratio(sl[key], other[key])
                    elif sl and other:
                        out[f"{ours} / {peer} throughput{clock}"] = ratio(other[key], sl[key])
        return out

    at_size = {b * refs: ratios(lambda t, key, b=b: tools.get(t, {}).get(b)) for b in sizes}
    at_best = ratios(lambda t, key: min(tools[t].values(), key=lambda v: v[key]) if t in tools else None)
    errors = {}
    for tool, hyp in scores.items():
        err, delta = delta_errors(model, X, R, hyp, device)
        errors[tool] = {"max_delta_error": float(err.max()), "max_abs_delta": float(np.abs(delta).max())}
    names = sorted(scores)
    diffs = {
        f"{a} vs {b}": float(np.abs(scores[a] - scores[b]).max()) for i, a in enumerate(names) for b in names[i + 1 :]
    }
    scale = max(float(np.abs(h).max()) for h in scores.values()) if scores else float("nan")
    return {
        "model": name,
        "length": X.shape[-1],
        "regions": n,
        "refs": refs,
        "sweep": tools,
        "best": best,
        "ratios_at_pairs_per_call": at_size,
        "ratios_at_best": at_best,
        "summation_to_delta": errors,
        "max_abs_difference": diffs,
        "max_abs_hypothetical": scale,
    }


def markdown(report):
    """The report as markdown tables."""
    env = report["environment"]
    mem = "peak GPU memory allocated" if report["device"].startswith("cuda") else "peak RSS"
    out = [
        f"# DeepLIFT throughput on {report['device']}",
        "",
        f"{env['cpu']} ({env['cores']} cores, {env['threads']} torch threads){', ' + env['gpu'] if env.get('gpu') else ''}; "
        f"torch {env['torch']}, captum {env['captum']}, tangermeme {env['tangermeme']}, Python {env['python']}, "
        f"OMP_WAIT_POLICY {env['omp_wait_policy']}; seqlift/attribution sources sha256 {env['seqlift_engine_sha256']}. "
        f"Load average (1 min) {env['load_start']:.2f} at the start, {env['load_end']:.2f} at the end; "
        f"total {env['total_s']:.0f} s. K = {report['refs']} references per region; median of {report['repeats']}.",
    ]
    for m in report["models"]:
        out += [
            "",
            f"## {m['model']}-like, input (N, 4, {m['length']}), {m['regions']} regions",
            "",
            f"| tool | regions/call | pairs/call | rows/call | median s | regions/s | CPU s | {mem} MiB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for tool in TOOLS:
            for b, s in sorted(m["sweep"].get(tool, {}).items()):
                rows = {
                    "seqlift": b * (m["refs"] + 1),
                    "seqlift-compiled": b * (m["refs"] + 1),
                    "gradient": b * m["refs"],
                }.get(tool, 2 * b * m["refs"])
                mark = " (best)" if s is m["best"][tool] else ""
                out.append(
                    f"| {tool}{mark} | {b} | {b * m['refs']} | {rows} | {s['median_s']:.3f} | "
                    f"{s['regions_per_s']:.2f} | {s['cpu_s']:.2f} | {s['peak_mib']:.0f} |"
                )
        pairs = sorted(m["ratios_at_pairs_per_call"])
        names = list(m["ratios_at_best"])
        out += [
            "",
            "| ratio | " + " | ".join(f"{p} pairs/call" for p in pairs) + " | each at its best batch size |",
            "| --- |" + " ---: |" * (len(pairs) + 1),
        ]
        for r in names:
            cells = [m["ratios_at_pairs_per_call"][p].get(r, float("nan")) for p in pairs] + [m["ratios_at_best"][r]]
            out.append(f"| {r} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
        out += [
            "",
            "| tool | max summation-to-delta error | max \\|f(x) - mean f(r)\\| |",
            "| --- | ---: | ---: |",
        ]
        for tool, e in m["summation_to_delta"].items():
            out.append(f"| {tool} | {e['max_delta_error']:.2e} | {e['max_abs_delta']:.2e} |")
        out += [
            "",
            f"| scores compared | max \\|difference\\| (largest \\|score\\|: {m['max_abs_hypothetical']:.2e}) |",
            "| --- | ---: |",
        ]
        out += [f"| {k} | {v:.2e} |" for k, v in m["max_abs_difference"].items()]
    return "\n".join(out) + "\n"


def engine_hash():
    """Short sha256 of seqlift's engine sources, to tell which version was timed."""
    import seqlift.attribution

    sources = sorted(Path(seqlift.attribution.__file__).parent.glob("*.py"))
    return hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]


def environment(threads, device):
    import captum
    import tangermeme

    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    env = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "captum": captum.__version__,
        "tangermeme": tangermeme.__version__,
        "python": platform.python_version(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "seqlift_engine_sha256": engine_hash(),
    }
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bpnet,basset", help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of " + ", ".join(TOOLS))
    parser.add_argument("--regions", type=int, help="regions per model (default: 4 for bpnet, 16 for basset)")
    parser.add_argument("--refs", type=int, default=20, help="references per region (K)")
    parser.add_argument("--regions-per-call", default="1,2,4", help="batch sizes to sweep, in regions per model call")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per batch size; the median is reported")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))))
        return

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    models = args.models.split(",")
    tools = args.tools.split(",")
    for value, allowed in ((models, MODELS), (tools, TOOLS)):
        if set(value) - set(allowed):
            parser.error(f"unknown {', '.join(sorted(set(value) - set(allowed)))}; choose from {', '.join(allowed)}")
    sizes = sorted({int(b) for b in args.regions_per_call.split(",")})
    refs, repeats = args.refs, args.repeats
    default_regions = {"bpnet": 4, "basset": 16, "bilstm": 8, "attention": 8}
    if args.quick:
        sizes, refs, repeats, default_regions = [1, 2], 4, 1, dict.fromkeys(MODELS, 2)

    started, env = time.perf_counter(), environment(args.threads, device)
    env["load_start"] = os.getloadavg()[0]
    report = {"device": device, "refs": refs, "repeats": repeats, "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            n = args.regions or default_regions[name]
            spec = {
                "model": name,
                "device": device,
                "threads": args.threads,
                "regions": n,
                "refs": refs,
                "repeats": repeats,
                "regions_per_call": [b for b in sizes if b <= n],
            }
            results, scores = [], {}
            for tool in tools:
                print(f"{name}: {tool} ...", file=sys.stderr, flush=True)
                path = os.path.join(tmp, f"{name}-{tool}.npy")
                results.append(spawn({**spec, "tool": tool, "scores": path}))
                if os.path.exists(path):
                    scores[tool] = np.load(path)
            model = build_model(name, device)
            X, R = make_data(n, refs, model.length)
            report["models"].append(summarise(name, results, scores, model, X, R, refs, device))
    report["environment"] = {**env, "load_end": os.getloadavg()[0], "total_s": time.perf_counter() - started}
    if engine_hash() != env["seqlift_engine_sha256"]:
        print("warning: seqlift's engine sources changed during the run; rerun for consistent numbers", file=sys.stderr)
    text = markdown(report)
    print(text)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"deeplift-{device}.md").write_text(text)
        (RESULTS / f"deeplift-{device}.json").write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
