def score_options(wildcards):
    """Options of `seqlift score` from the config, one flag per key."""
    c = config["score"]
    opts = [
        f"--target {c['target']}",
        f"--method {c['method']}",
        f"--rule {c['rule']}",
        f"--reference {c['reference']}",
        f"--n-refs {c['n_refs']}",
        f"--seed {c['seed']}",
        f"--batch-size {c['batch_size']}",
        f"--device {c['device']}",
    ]
    if config.get("weights"):
        opts.append(f"--weights {config['weights']}")
    if c.get("skip_invalid"):
        opts.append("--skip-invalid")
    return " ".join(opts + [c.get("extra", "")])
