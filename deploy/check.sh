#!/usr/bin/env bash
# deploy/check.sh: validate every file under deploy/ with the programs that
# will read it. Run from anywhere; `go tool task deploy-check` runs it.
#
# A check whose tool is missing is skipped with the reason; the exit status
# is non-zero when any check that ran failed. Tools used when present:
#   nats-server  (built from the module cache when not on PATH)
#   promtool     (Debian: apt-get install prometheus)
#   docker compose, or else deploy/composecheck (compose-go; needs the Go
#                module proxy the first time)
#   kubectl      (kustomize build, offline)
#   docker       (image build, when an engine answers)
set -u
cd "$(dirname "$0")/.." || exit 1

passed=0 failed=0 skipped=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export MAILTEL_INGEST_TOKEN=${MAILTEL_INGEST_TOKEN:-deploy-check}

# check NAME COMMAND...: run COMMAND, report its outcome and, on failure,
# its output.
check() {
	local name=$1
	shift
	if "$@" >"$tmp/out" 2>&1; then
		echo "ok    $name"
		passed=$((passed + 1))
	else
		echo "FAIL  $name"
		sed 's/^/      /' "$tmp/out"
		failed=$((failed + 1))
	fi
}

skip() {
	echo "skip  $1: $2"
	skipped=$((skipped + 1))
}

have() { command -v "$1" >/dev/null 2>&1; }

# --- NATS node configurations --------------------------------------------
nats=$(command -v nats-server || true)
if [ -z "$nats" ]; then
	nats=$tmp/nats-server
	go build -o "$nats" github.com/nats-io/nats-server/v2 >"$tmp/build" 2>&1 || { cat "$tmp/build"; nats=; }
fi
for conf in deploy/nats/n*.conf; do
	if [ -n "$nats" ]; then
		check "nats-server -t -c $conf" "$nats" -t -c "$conf"
	else
		skip "nats-server -t -c $conf" "no nats-server and it could not be built"
	fi
done

# --- Go checks: nats configs, compose flags, k8s, alerts, dashboard -------
check "go test ./deploy (configs, compose, k8s, alerts, dashboard against the code)" go test -count=1 ./deploy
check "router validate --config deploy/mailtel.cluster.toml" go run ./cmd/router validate --config deploy/mailtel.cluster.toml

# --- Prometheus ----------------------------------------------------------
if have promtool; then
	check "promtool check config deploy/prometheus/prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
	check "promtool check rules deploy/prometheus/alerts.yml" promtool check rules deploy/prometheus/alerts.yml
	check "promtool test rules deploy/prometheus/alerts_test.yml" promtool test rules deploy/prometheus/alerts_test.yml
	# Every dashboard query as a recording rule: promtool parses the PromQL.
	if have python3; then
		python3 - deploy/grafana/mailtel-dashboard.json >"$tmp/dashboard-rules.yml" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print("groups:\n  - name: dashboard\n    rules:")
for p in d["panels"]:
    for i, t in enumerate(p["targets"]):
        expr = t["expr"].replace("$__rate_interval", "5m").replace("$type", ".*")
        print("      - record: dashboard:panel%d:%d\n        expr: %s" % (p["id"], i, json.dumps(expr)))
EOF
		check "promtool check rules (every dashboard query)" promtool check rules "$tmp/dashboard-rules.yml"
	else
		skip "dashboard queries" "no python3 to extract them"
	fi
else
	skip "promtool checks" "promtool not found (Debian: apt-get install prometheus)"
fi

# --- Compose -------------------------------------------------------------
compose=deploy/compose/docker-compose.yml
if docker compose version >/dev/null 2>&1; then
	check "docker compose config ($compose)" docker compose -f "$compose" config -q
elif have go && (cd deploy/composecheck && go build -o "$tmp/composecheck" . >"$tmp/build" 2>&1); then
	check "compose-go load ($compose)" "$tmp/composecheck" "$compose"
else
	skip "compose file" "no docker compose plugin, and deploy/composecheck did not build (no module proxy?)"
fi

# --- Kubernetes ----------------------------------------------------------
if have kubectl; then
	check "kubectl kustomize deploy/k8s" kubectl kustomize deploy/k8s
else
	skip "kubectl kustomize deploy/k8s" "kubectl not found (go test ./deploy checked the manifests' structure)"
fi

# --- Image ---------------------------------------------------------------
if have docker && docker info >/dev/null 2>&1; then
	check "docker build -f deploy/Dockerfile" docker build -q -f deploy/Dockerfile -t mailtel:check .
else
	# No engine: build what the Dockerfile builds, the way it builds it.
	check "image binaries (CGO_ENABLED=0 go build as in deploy/Dockerfile; no Docker engine)" \
		env CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/bin/" ./cmd/router ./cmd/sinks ./cmd/publisher
fi

echo "deploy-check: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
