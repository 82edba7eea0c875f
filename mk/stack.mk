# The stack: `make env` writes .env with fresh secrets (for docker compose and the local stack);
# `make stack-up` / `stack-down` / `stack-status` run it as local processes without Docker.
.PHONY: env stack-up stack-down stack-status test-stack

env: venv ## write .env from .env.example with fresh random secrets (FORCE=1 replaces an existing .env)
	$(VENV)/bin/python -m mbats.stack.envfile $(if $(FORCE),--force)

stack-up: venv venv-airflow venv-superset ## start the whole stack as local processes (no Docker), wait until healthy
	$(VENV)/bin/python -m mbats.stack up

stack-down: ## stop what stack-up started
	$(VENV)/bin/python -m mbats.stack down

# A stopped or unhealthy stack is an answer, not a make error (the command itself exits 3 for scripts).
stack-status: ## processes and health of the local stack
	@$(VENV)/bin/python -m mbats.stack status || echo "not every service is healthy: \`make stack-up\` starts (or repairs) the stack"

test-stack: venv venv-airflow venv-superset ## the stack tests: compose/Dockerfile checks and the end-to-end run on the local stack
	$(VENV)/bin/python -m pytest tests/stack -v --durations=10
