# Two commands do all the set-up on a fresh machine (Python 3.11+, pip, make):
#   make demo   trains every model on the embedded default data and writes the comparison
#   make test   runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNS ?= runs
EXPERIMENT ?= demo
# The demo's search (Hyperband, at most 3 trials of up to 2 epochs) and GAN (20 epochs) are smaller than --preset
# quick's (15 minutes / 30 trials of up to 12 epochs; 30 GAN epochs) so that the whole job, install
# included, stays under 10 minutes on 2 cores; run the commands yourself for the full quick preset.
DEMO_SEARCH ?= --max-trials 3 --search-epochs 2
DEMO_GAN ?= --gan-epochs 20

.PHONY: demo test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

demo: venv
	$(PY) -m classifiers.train --model baseline --runs-dir $(RUNS) --experiment $(EXPERIMENT)
	$(PY) -m classifiers.train --model resnet --runs-dir $(RUNS) --experiment $(EXPERIMENT)
	$(PY) -m classifiers.train --model hpsearch $(DEMO_SEARCH) --runs-dir $(RUNS) --experiment $(EXPERIMENT)
	$(PY) -m gan.train $(DEMO_GAN) --runs-dir $(RUNS) --experiment $(EXPERIMENT)
	$(PY) -m compare.report --runs-dir $(RUNS) --experiment $(EXPERIMENT)
	@echo
	@echo "Results: $(RUNS)/$(EXPERIMENT)/ (the comparison: $(RUNS)/$(EXPERIMENT)/report/report.md)"
	@echo "TensorBoard: $(PY) -m tensorboard.main --logdir $(RUNS)/$(EXPERIMENT) --host 127.0.0.1"

test: venv
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(RUNS) *.egg-info
