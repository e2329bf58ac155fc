# glace-ros: the two commands are `make demo` and `make test`; both run `make setup` first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV := . scripts/env.sh &&
PYTEST_ARGS ?=

help:
	@echo "make demo   - set up, map the embedded default scene, replay it through the live node, print metrics"
	@echo "make test   - set up, then run the test suite (slow end-to-end tests: make test-slow)"

setup:
	@bash scripts/setup_env.sh

# GLACE_REQUIRE_GL: make setup installed EGL/Mesa, so the GL renderer tests must run, not skip.
test: setup
	@$(ENV) GLACE_REQUIRE_GL=1 python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: setup
	@$(ENV) GLACE_REQUIRE_GL=1 python -m pytest -m slow $(PYTEST_ARGS)

demo: setup
	@$(ENV) bash scripts/demo.sh

.PHONY: help setup test test-slow demo
