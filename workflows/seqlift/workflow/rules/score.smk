rule score_shard:
    """DeepLIFT scores of one shard of the regions (shards named k-of-n)."""
    input:
        regions=config["regions"],
        fasta=config["fasta"],
        model=config["model"],
    output:
        f"{OUT}/shards/{{scatteritem}}.h5",
    conda:
        "../envs/seqlift.yaml"
    log:
        f"{OUT}/logs/score/{{scatteritem}}.log",
    params:
        options=score_options,
    threads: config["score"]["threads"]
    resources:
        gpu=config["score"]["gpus"],
    shell:
        "OMP_NUM_THREADS={threads} seqlift score {input.regions} --fasta {input.fasta} --model {input.model} "
        "--shard {wildcards.scatteritem} -o {output} --force --quiet {params.options} > {log} 2>&1"


rule merge:
    """Join the shards in the original row order, checking they come from one run."""
    input:
        gather.shard(f"{OUT}/shards/{{scatteritem}}.h5"),
    output:
        f"{OUT}/scores.h5",
    conda:
        "../envs/seqlift.yaml"
    log:
        f"{OUT}/logs/merge.log",
    shell:
        "seqlift merge {input} -o {output} --force > {log} 2>&1"
