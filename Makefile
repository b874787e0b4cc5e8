# Two commands do all the set-up on a fresh machine (Python 3.11+, pip, make):
#   make demo   trains every model on the embedded default data and writes the comparison
#   make test   runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNS ?= runs
EXPERIMENT ?= demo
# The demo's resnet (8 epochs), search (Hyperband, at most 3 trials of up to 2 epochs) and GAN (400 steps)
# are smaller than --preset quick's (30 epochs; 15 minutes / 30 trials of up to 12 epochs; 5,500 GAN steps)
# so that the whole job, install included, stays under 10 minutes on 2 cores; run the commands
# yourself for the full quick preset. The GAN's detectors are a small learning curve's: its discriminator
# and the scratch control fine-tuned on 50 labelled faces and on all of them, two seeds each (the full
# curve, with the baseline and resnet beside them: docs/learning-curve.md). Two external synthetic sets
# (another generator's fingerprint, and the other family's artefact: over-sharpened fakes) show the
# cross-generator table; the second is also the new family a detector is adapted to.
DEMO_SEARCH ?= --max-trials 3 --search-epochs 2
DEMO_RESNET ?= --epochs 8
DEMO_GAN ?= --gan-steps 400 --sample-every 200
DEMO_CURVE ?= --labels 50 all --recipes dcgan-discriminator dcgan-scratch --seeds 2
# The baseline adapted to the over-sharpened family from 5 and then 25 labelled faces per class, one seed: a
# short adaptation curve (run classifiers.adapt with more --shots and --seeds for a real one).
DEMO_ADAPT ?= --shots 5 25 --seeds 1
DEMO_EXTERNAL := $(RUNS)/.demo-external

.PHONY: demo test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

demo: venv
	$(PY) -m classifiers.train --model baseline --runs-dir $(RUNS) --experiment $(EXPERIMENT)
	$(PY) -m classifiers.train --model resnet $(DEMO_RESNET) --runs-dir $(RUNS) --experiment $(EXPERIMENT)
	$(PY) -m classifiers.train --model hpsearch $(DEMO_SEARCH) --runs-dir $(RUNS) --experiment $(EXPERIMENT)
	$(PY) -m compare.bench --learning-curve $(DEMO_CURVE) --gan-args "$(DEMO_GAN)" --runs-dir $(RUNS) \
		--experiment $(EXPERIMENT)
	$(PY) -m data.synthetic $(DEMO_EXTERNAL)/other-fingerprint --family other-upsampler --images-per-class 120 --seed 1
	$(PY) -m data.synthetic $(DEMO_EXTERNAL)/sharpened --family sharpened --images-per-class 240 --seed 2
	$(PY) -m classifiers.adapt --run $(RUNS)/$(EXPERIMENT)/baseline --data-dir $(DEMO_EXTERNAL)/sharpened $(DEMO_ADAPT)
	$(PY) -m compare.report --runs-dir $(RUNS) --experiment $(EXPERIMENT) \
		--test-dir other-fingerprint=$(DEMO_EXTERNAL)/other-fingerprint --test-dir sharpened=$(DEMO_EXTERNAL)/sharpened
	@echo
	@echo "Results: $(RUNS)/$(EXPERIMENT)/ (the comparison: $(RUNS)/$(EXPERIMENT)/report/report.md; TensorBoard: the command above)"

# The quick tests first (a minute), then the end-to-end ones (they train through the kit's commands), two at a
# time: TEST_WORKERS=1 runs them one by one.
TEST_WORKERS ?= 2
test: venv
	$(PY) -m pytest -q -m "not end_to_end"
	$(PY) -m pytest -q -m end_to_end -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) $(RUNS) *.egg-info
