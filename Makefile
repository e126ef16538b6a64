# The two commands a user needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install browser slurm demo test lint lock clean-demo

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m workflow_scripts.demo run

# The report's browser test opens it in Debian's headless Chromium.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed (apt-get install chromium as root): the browser test will skip"; fi; }

# The SLURM test starts a one-node cluster from Debian's packages (no slurmdbd).
slurm:
	@command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      slurmctld slurmd slurm-client munge >/dev/null; \
	  else echo "SLURM not installed (apt-get install slurmctld slurmd slurm-client munge as root): the SLURM test will skip"; fi; }

test: $(STAMP) browser slurm
	$(PY) -m pytest -ra

lint: $(STAMP)
	$(VENV)/bin/snakemake --lint --configfile config/demo.yaml

lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet torch==2.13.0 -e '.[test]'
	{ head -n 2 requirements.lock; .lockenv/bin/pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu/torch==2.13.0/'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lockenv

clean-demo:
	rm -rf demo_data results
