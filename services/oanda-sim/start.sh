#!/usr/bin/env bash
# The OANDA v20 simulator (market replay over the v20 REST protocol) for offline paper trading
# and tests. Settings: OANDA_SIM_HOST (0.0.0.0), OANDA_SIM_PORT (port of MBATS_OANDA_SIM_URL),
# OANDA_SIM_INSTRUMENTS (space-separated, "EUR_USD GBP_USD"), OANDA_SIM_GRANULARITY (M1),
# OANDA_SIM_SOURCE (synthetic|secmaster), OANDA_SIM_SPEED (manual|step|realtime|xN),
# OANDA_SIM_START / OANDA_SIM_END (replayed range), MBATS_BIN_DIR (folder of `mbats`; default PATH).
# The bearer token is MBATS_OANDA_TOKEN (see `mbats sim serve --help`).
set -euo pipefail
MBATS="${MBATS_BIN_DIR:+$MBATS_BIN_DIR/}mbats"
args=(sim serve --host "${OANDA_SIM_HOST:-0.0.0.0}" --granularity "${OANDA_SIM_GRANULARITY:-M1}"
      --source "${OANDA_SIM_SOURCE:-synthetic}" --speed "${OANDA_SIM_SPEED:-manual}")
[[ -n "${OANDA_SIM_PORT:-}" ]] && args+=(--port "$OANDA_SIM_PORT")
[[ -n "${OANDA_SIM_START:-}" ]] && args+=(--start "$OANDA_SIM_START")
[[ -n "${OANDA_SIM_END:-}" ]] && args+=(--end "$OANDA_SIM_END")
for instrument in ${OANDA_SIM_INSTRUMENTS:-EUR_USD GBP_USD}; do args+=(--instrument "$instrument"); done
exec "$MBATS" "${args[@]}" "$@"
