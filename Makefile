# The two README commands. Each creates (or reuses) the cached virtual environment
# that .ci/venv.sh keys by a hash of requirements.txt.
SHELL := /bin/bash
PY = "$$(bash .ci/venv.sh)/bin/python"

.PHONY: demo test lint release references venv clean

## demo: build the student release and autograde the bundled sample submissions
demo:
	@py=$(PY) && $$py -m autograder demo

## test: ruff, then the whole pytest suite
test:
	@py=$(PY) && $$py -m ruff check . && $$py -m pytest $(PYTEST_ARGS)

lint:
	@py=$(PY) && $$py -m ruff check .

release:
	@py=$(PY) && $$py -m autograder release

## references: regenerate the hidden tests' stored cases (A=<assignment> for one; CHECK=1 only compares),
## then what is generated from the specs: autograder/README.md's policy table, each notebook's rules
## paragraph and cs_lib/policies.py (python -m autograder.judging.policy)
references:
	@py=$(PY) && $$py -m autograder references $(A) $(if $(CHECK),--check,&& $$py -m autograder.judging.policy)

venv:
	@bash .ci/venv.sh

clean:
	rm -rf assignments/release assignments/submitted assignments/autograded assignments/feedback \
	       assignments/gradebook.db dist grading_out
