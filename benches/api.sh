#!/usr/bin/env bash
# benches/api.sh — the HTTP API under load, on a fleet state of N hosts (default 10,000):
#   hosts       GET /api/v1/hosts (a page of 100 hosts), wrk: requests/s and p50/p99 latency
#   hosts-1000  GET /api/v1/hosts?limit=1000
#   host        GET /api/v1/hosts/host-05000 (one host in full)
#   fleet       GET /api/v1/fleet
#   requests    POST /api/v1/patch-requests, R requests (default 200) C at once (default 8),
#               each validated against the N-host fleet and committed to a bare remote
#               (`direct` mode: one branch, compare-and-swap); commits/s, and the remote
#               is checked to hold exactly R new commits
# The state is a real fleet repo with a real reports branch (benches/api_state.rs), served
# by `patchkeeper serve --api-only` (no host is contacted) from a bare remote over file://.
# wrk and the server share this machine's cores: the figures are a floor.
#
# Usage: benches/api.sh [--hosts N] [--duration 20s] [--connections 64] [--requests R]
#                       [--parallel C] [--keep]
# Needs: wrk (Debian package `wrk`), curl, git.
set -euo pipefail

HOSTS=10000
DURATION=20s
CONNECTIONS=64
REQUESTS=200
PARALLEL=8
KEEP=0
while (($#)); do
	case $1 in
	--hosts) HOSTS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--connections) CONNECTIONS=$2; shift 2 ;;
	--requests) REQUESTS=$2; shift 2 ;;
	--parallel) PARALLEL=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	*) echo "usage: $0 [--hosts N] [--duration 20s] [--connections 64] [--requests R] [--parallel C] [--keep]" >&2; exit 2 ;;
	esac
done
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/pk-api-bench.XXXXXX)
PK=$ROOT/target/release/patchkeeper
SERVE_PID=""
log() { printf 'bench: %s\n' "$*" >&2; }
stop_serve() {
	if [[ -n $SERVE_PID ]]; then
		kill -TERM "$SERVE_PID" 2>/dev/null || true
		wait "$SERVE_PID" 2>/dev/null || true
		SERVE_PID=""
	fi
}
cleanup() {
	stop_serve
	if ((KEEP)); then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

log "building (release)"
(cd "$ROOT" && cargo build --release --quiet --bin patchkeeper)
TOKEN_JSON=$("$PK" token new --name bench --scope admin --json)
TOKEN=$(printf '%s' "$TOKEN_JSON" | sed -n 's/.*"token": "\(pk_[^"]*\)".*/\1/p')
SHA=$(printf '%s' "$TOKEN_JSON" | sed -n 's/.*"sha256": "\([0-9a-f]*\)".*/\1/p')

# serve MODE_DIR: starts serve --api-only on the state in MODE_DIR, sets URL.
serve() {
	local dir=$1
	"$PK" --log-format json serve --api-only --listen 127.0.0.1:0 --rate-limit 0 \
		--repo "file://$dir/fleet.git" --cache "$dir/cache" --interval 1h 2>"$dir/serve.log" &
	SERVE_PID=$!
	local addr="" i
	for ((i = 0; i < 600; i++)); do
		addr=$(grep -o '"address":"[^"]*"' "$dir/serve.log" | head -1 | cut -d'"' -f4 || true)
		[[ -n $addr ]] && break
		sleep 0.1
	done
	[[ -n $addr ]] || { cat "$dir/serve.log" >&2; exit 1; }
	URL=http://$addr
	# Fetching a remote whose reports branch holds N host files and reading them takes a
	# while at N = 10,000 (libgit2's file:// transport); wait up to 10 minutes. Measure only
	# once the loop says it waits for its next round: its first round's work after the
	# reports are published (patch-request branches, run records, view rebuilds) competes
	# with the first route measured otherwise (p99 117 ms instead of 30 ms here).
	for ((i = 0; i < 3000; i++)); do
		[[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz") == 200 ]] &&
			[[ $(curl -s -H "Authorization: Bearer $TOKEN" "$URL/api/v1/fleet" | grep -c '"reportsCommit":"') == 1 ]] &&
			grep -q 'until the next reconcile' "$dir/serve.log" && return 0
		sleep 0.2
	done
	log "serve did not become ready"; cat "$dir/serve.log" >&2; exit 1
}

# load NAME PATH: wrk against PATH, prints a table row.
load() {
	local name=$1 path=$2 out rps p50 p99
	out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" "$URL$path")
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
	p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
	if grep -q 'Non-2xx' <<<"$out"; then log "$name: non-2xx answers:"; echo "$out" >&2; exit 1; fi
	printf '%-12s %12s %10s %10s\n' "$name" "$rps" "$p50" "$p99"
}

log "making the state: $HOSTS hosts with a reports branch"
mkdir -p "$WORK/read" "$WORK/write"
(cd "$ROOT" && cargo bench --quiet --bench api_state -- "$WORK/read" "$HOSTS" "$SHA" branch >/dev/null)
(cd "$ROOT" && cargo bench --quiet --bench api_state -- "$WORK/write" "$HOSTS" "$SHA" direct >/dev/null)

serve "$WORK/read"
log "reads: wrk -t2 -c$CONNECTIONS -d$DURATION on $URL"
printf '%-12s %12s %10s %10s\n' ROUTE "REQUESTS/S" P50 P99
load hosts /api/v1/hosts
load hosts-1000 '/api/v1/hosts?limit=1000'
load host /api/v1/hosts/host-05000
load fleet /api/v1/fleet
stop_serve

serve "$WORK/write"
BASE=$(git -C "$WORK/write/fleet.git" rev-parse main)
log "writes: $REQUESTS patch requests, $PARALLEL at once"
post() {
	curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
		"$URL/api/v1/patch-requests" \
		-d "{\"metadata\":{\"name\":\"bench-$1\"},\"spec\":{\"selector\":{\"groups\":[\"web\"]},\"packages\":[{\"name\":\"pkg-0001\",\"minVersion\":\"1.1-1\"}],\"reason\":\"bench $1\"}}"
}
export -f post
export URL TOKEN
START=$(date +%s.%N)
CODES=$(seq -w 1 "$REQUESTS" | xargs -P "$PARALLEL" -I{} bash -c 'post {}')
END=$(date +%s.%N)
OK=$(grep -c '^201$' <<<"$CODES" || true)
COMMITS=$(git -C "$WORK/write/fleet.git" rev-list --count "$BASE..main")
stop_serve
[[ $OK == "$REQUESTS" && $COMMITS == "$REQUESTS" ]] || { log "expected $REQUESTS commits: $OK answered 201, $COMMITS on the remote"; exit 1; }
awk -v n="$REQUESTS" -v s="$START" -v e="$END" 'BEGIN { printf "%-12s %12.1f commits/s (%d commits on the remote in %.1f s)\n", "requests", n / (e - s), n, e - s }'
