# seqlift: `make demo` installs and scores the bundled demo; `make test` installs and runs the tests.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# torch is pinned so that pip takes the CPU build where one is provided locally;
# any torch >= 2.6 works (pyproject.toml), including CUDA builds.
TORCH ?= torch==2.13.0

.PHONY: install install-test demo test quick-test workflow-test workflow-check bench clean

install:
	@command -v bedtools >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq bedtools >/dev/null; \
	  else \
	    echo "bedtools is missing: install it (sudo apt-get install bedtools, or conda install -c bioconda bedtools)" >&2; exit 1; \
	  fi; }
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e .

install-test: install
	$(PIP) install -q -e ".[test]"
	# bpnet-lite's BPNet/ChromBPNet classes serve as test models; its own dependencies
	# (macs3, bam2bw, ...) are for training pipelines and are not needed for that.
	$(PIP) install -q --no-deps "bpnet-lite==1.1.0"
	# gReLU's ConvGRUModel is a published conv-RNN test model (tests/test_published_models.py). gReLU's own
	# dependencies (wandb, genomepy, captum 0.5, ...) serve its training and analysis tools and would downgrade
	# captum; its models need only torch, einops, pandas and enformer-pytorch (test extras).
	$(PIP) install -q --no-deps "grelu==1.1.0"

demo: install
	@mkdir -p results
	seqlift score seqlift/demo/regions.bed --config configs/demo.yaml -o results/demo.h5 --force
	@$(PYTHON) -c "import h5py; f = h5py.File('results/demo.h5'); print('results/demo.h5:', dict(f.attrs)['n_regions'], 'regions,', 'shap/seq', f['shap/seq'].shape)"

test: install-test
	@echo "== 1/3 lint: ruff check and ruff format --check"
	$(PYTHON) -m ruff check seqlift tests benchmarks scripts workflows
	$(PYTHON) -m ruff format --check seqlift tests benchmarks scripts workflows
	@echo "== 2/3 tests: pytest"
	$(PYTHON) -m pytest -q
	@echo "== 3/3 workflow: snakemake lint, dry run and a tiny run"
	$(MAKE) --no-print-directory workflow-check

quick-test:  # the tests not marked slow (no architecture zoo, torch.compile, kill loops, modisco or workflow runs)
	$(PYTHON) -m pytest -q -m "not slow"


SNAKEFILE := workflows/seqlift/workflow/Snakefile
TEST_CONFIG := workflows/seqlift/.test/config/config.yaml

workflow-test: install-test workflow-check

# the workflow on the bundled demo: lint, dry run, then the full tiny run
workflow-check:
	snakemake -s $(SNAKEFILE) --configfile $(TEST_CONFIG) --lint
	snakemake -s $(SNAKEFILE) --configfile $(TEST_CONFIG) -n --quiet
	snakemake -s $(SNAKEFILE) --configfile $(TEST_CONFIG) --cores 2 --forceall --quiet
	@echo "workflow: results/workflow-test/ (scores, logos, motifs, tracks)"

bench: install-test
	$(PYTHON) benchmarks/bench_deeplift.py
	$(PYTHON) benchmarks/bench_shuffle.py

clean:
	rm -rf results .pytest_cache build *.egg-info
