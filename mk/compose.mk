# The compose test: the real docker-compose.yml built and run on podman (no Docker engine needed;
# see tests/compose/run.sh and docs/stack.md). Images, layers and the base rootfs are cached in
# ~/.cache/mbats-compose (MBATS_COMPOSE_CACHE), outside the checkout, keyed by their inputs.
.PHONY: test-compose compose-engine compose-down

test-compose: venv ## build every image, bring the compose stack up on podman, run the e2e tests against it
	tests/compose/run.sh

compose-engine: venv ## start podman's Docker API socket for the compose test (installs podman once)
	tests/compose/engine.sh up
	@tests/compose/engine.sh env

compose-down: ## stop the compose test's stack (volumes removed) and its engine
	-tests/compose/compose.sh down -v --remove-orphans
	tests/compose/engine.sh down

EXTRA_TEST_TARGETS += test-compose
MAIN_TEST_IGNORE += --ignore=tests/compose
