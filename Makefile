# Developer shortcuts (CI runs .ci/run).
.PHONY: compile debug test test-pure bench table fuzz clean

compile:
	python setup.py build_ext --inplace --cython-always

debug:
	QLOOP_DEBUG_BUILD=1 python setup.py build_ext --inplace --cython-always

test: compile
	pytest tests -q

test-pure:
	QLOOP_NO_EXTENSIONS=1 pytest tests -q

bench: compile
	pytest bench --benchmark-only

table: compile
	python -m bench.table

clean:
	rm -rf build dist *.egg-info qloop/_core.c qloop/*.so qloop/*.html
