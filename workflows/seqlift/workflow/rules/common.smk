import shlex

import yaml


def model_inputs():
    """Files the model comes from: a .pt2, or the source file of a file.py:Class model; plus its weights.

    A package.module:Class model has no file of its own to declare.
    """
    files = {}
    spec = str(config["model"])
    where, sep, _ = spec.rpartition(":")
    if not sep or os.path.exists(spec):
        files["model"] = spec
    elif where.endswith(".py"):
        files["model_source"] = where
    if config.get("weights"):
        files["weights"] = config["weights"]
    return files


def quoted(value):
    """One shell word: mappings (a per-layer rule) as YAML flow text, everything quoted."""
    if isinstance(value, dict):
        value = yaml.safe_dump(value, default_flow_style=True).strip()
    return shlex.quote(str(value))


def score_options(wildcards):
    """Options of `seqlift score` from the config, one quoted flag per key."""
    c = config["score"]
    opts = [f"--model {quoted(config['model'])}"]
    for key in ("target", "method", "rule", "max_rule", "reference", "n_refs", "seed", "batch_size", "device"):
        if c.get(key, "auto") != "auto":  # auto: seqlift score's own default (a probed batch size, sign)
            opts.append(f"--{key.replace('_', '-')} {quoted(c[key])}")
    if config.get("weights"):
        opts.append(f"--weights {quoted(config['weights'])}")
    if c.get("skip_invalid"):
        opts.append("--skip-invalid")
    extra = c.get("extra", "")
    return " ".join(opts + ([" ".join(quoted(w) for w in shlex.split(extra))] if extra else []))
