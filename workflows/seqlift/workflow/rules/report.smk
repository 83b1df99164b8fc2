rule logos:
    """Contribution logos of the regions with the largest total contribution."""
    input:
        f"{OUT}/scores.h5",
    output:
        directory(f"{OUT}/logos"),
    conda:
        "../envs/seqlift.yaml"
    log:
        f"{OUT}/logs/logos.log",
    params:
        top=config["logos"]["top"],
    shell:
        "seqlift logo {input:q} --top {params.top} --hypothetical --out {output:q} --force > {log:q} 2>&1"


rule motifs:
    """Motif discovery with modisco-lite: motif logos, MEME file, seqlets BED and a report."""
    input:
        unpack(lambda wildcards: {"db": config["motifs"]["motif_db"]} if config["motifs"].get("motif_db") else {}),
        scores=f"{OUT}/scores.h5",
    output:
        report=f"{OUT}/motifs/report.html",
        meme=f"{OUT}/motifs/motifs.meme",
    conda:
        "../envs/seqlift.yaml"
    log:
        f"{OUT}/logs/motifs.log",
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.report),
        options=lambda wildcards, input: " ".join(
            [f"--max-seqlets {quoted(config['motifs']['max_seqlets'])}", f"--window {quoted(config['motifs']['window'])}"]
            + ([f"--motif-db {quoted(input.db)}"] if "db" in input.keys() else [])
        ),
    shell:
        "seqlift motifs {input.scores:q} -o {params.outdir:q} --force {params.options} > {log:q} 2>&1"


rule tracks:
    """bigWig tracks of the contributions in genome coordinates, and a BED of the scored windows."""
    input:
        scores=f"{OUT}/scores.h5",
        fasta=config["fasta"],
    output:
        bigwig=f"{OUT}/tracks/scores.contrib.bw",
        bed=f"{OUT}/tracks/scores.windows.bed",
    conda:
        "../envs/seqlift.yaml"
    log:
        f"{OUT}/logs/tracks.log",
    params:
        prefix=lambda wildcards, output: output.bigwig[: -len(".contrib.bw")],
        overlap=config["tracks"]["overlap"],
    shell:
        "seqlift tracks {input.scores:q} --fasta {input.fasta:q} -o {params.prefix:q} --overlap {params.overlap:q} "
        "--force > {log:q} 2>&1"
