rule score_shard:
    """DeepLIFT scores of one shard of the regions (shards named k-of-n)."""
    input:
        unpack(lambda wildcards: model_inputs()),
        regions=config["regions"],
        fasta=config["fasta"],
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
        "OMP_NUM_THREADS={threads} seqlift score {input.regions:q} --fasta {input.fasta:q} "
        "--shard {wildcards.scatteritem} -o {output:q} --force --quiet {params.options} > {log:q} 2>&1"


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
        "seqlift merge {input:q} -o {output:q} --force > {log:q} 2>&1"
