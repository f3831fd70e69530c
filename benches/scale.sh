#!/usr/bin/env bash
# benches/scale.sh — one patchkeeper process against N simulated hosts that speak real SSH
# (benches/fleetsim, docs/scale.md): observe, plan (from the saved observation, then the
# full command with its dependency dry runs), apply of the saved plan, report; and the
# handshake floor (N plain russh handshakes + logins from a minimal client) in the same run.
#
# Per phase it prints the wall time, the controller's CPU time (user + sys of the
# patchkeeper process only, from /usr/bin/time), CPU per host, peak RSS, and the
# simulator's CPU over the same phase (reported separately: it shares the machine).
# Then it checks correctness against the simulator's own final state: every host has no
# pending security update, ran exactly one transaction, changed exactly the packages the
# plan named, and the report says every host is compliant.
#
# Usage: benches/scale.sh [--hosts N] [--parallel P] [--transaction-ms MS] [--observe-ms MS]
#                         [--rpm-percent P] [--base-octet B] [--port PORT] [--keep]
#   --hosts N          simulated hosts (default 200; the issue's proof runs 1000 and 10000)
#   --parallel P       connections at once, for observe, plan, the floor and the rollout
#                      (default: min(N, 1000))
#   --transaction-ms   duration of one simulated package transaction (default 3000)
#   --observe-ms       delay of one observation script / dry run (default 300)
#   --rpm-percent P    share of RPM/dnf (Rocky Linux 9) hosts, the rest Debian 12 (default 0)
#   --base-octet B     hosts listen on 127.B.x.y (default 100); --port (default 2222)
# Loopback only. Needs `ulimit -Hn` >= N + 2048.
set -euo pipefail

HOSTS=200
PARALLEL=
TXN_MS=3000
OBS_MS=300
BASE=100
PORT=2222
KEEP=0
RPM=0
while (($#)); do
	case $1 in
	--hosts) HOSTS=$2; shift 2 ;;
	--parallel) PARALLEL=$2; shift 2 ;;
	--transaction-ms) TXN_MS=$2; shift 2 ;;
	--observe-ms) OBS_MS=$2; shift 2 ;;
	--rpm-percent) RPM=$2; shift 2 ;;
	--base-octet) BASE=$2; shift 2 ;;
	--port) PORT=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	*) echo "usage: $0 [--hosts N] [--parallel P] [--transaction-ms MS] [--observe-ms MS] [--rpm-percent P] [--base-octet B] [--port PORT] [--keep]" >&2; exit 2 ;;
	esac
done
PARALLEL=${PARALLEL:-$((HOSTS < 1000 ? HOSTS : 1000))}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/pk-scale.XXXXXX)
FLEET=$WORK/fleet
log() { printf 'scale: %s\n' "$*" >&2; }
SIM_PID=
cleanup() {
	[[ -n $SIM_PID ]] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null || true
	if ((KEEP)); then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < HOSTS + 2048)); then
	log "the open-files hard limit ($hard) is too low for $HOSTS hosts (need $((HOSTS + 2048)))"
	exit 1
fi
ulimit -n "$hard"

log "building patchkeeper and fleetsim (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin patchkeeper --example fleetsim
PK=$ROOT/target/release/patchkeeper
SIM=$ROOT/target/release/examples/fleetsim

mkdir -p "$FLEET"
"$SIM" serve --hosts "$HOSTS" --fleet "$FLEET" --base-octet "$BASE" --port "$PORT" \
	--parallelism "$PARALLEL" --observe-ms "$OBS_MS" --dry-run-ms "$OBS_MS" \
	--transaction-ms "$TXN_MS" --rpm-percent "$RPM" --state-out "$WORK/state.tsv" >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 600); do
	grep -q listening "$WORK/sim.out" 2>/dev/null && break
	kill -0 "$SIM_PID" 2>/dev/null || { cat "$WORK/sim.err" >&2; exit 1; }
	sleep 0.1
done
log "$(cat "$WORK/sim.out")"
git -C "$FLEET" init -q
git -C "$FLEET" add -A
git -C "$FLEET" -c user.name=bench -c user.email=bench@localhost commit -qm "simulated fleet of $HOSTS hosts"

CLK=$(getconf CLK_TCK)
sim_cpu() { awk -v t="$CLK" '{printf "%.2f", ($14 + $15) / t}' "/proc/$SIM_PID/stat"; }

declare -a ROWS
# phase name, then the command: wall, controller user+sys, peak RSS via /usr/bin/time.
phase() {
	local name=$1; shift
	local s0 s1 status=0
	s0=$(sim_cpu)
	/usr/bin/time -f '%e %U %S %M' -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || status=$?
	s1=$(sim_cpu)
	read -r wall user sys rss <"$WORK/$name.time"
	ROWS+=("$(awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v h="$HOSTS" -v a="$s0" -v b="$s1" \
		'BEGIN {printf "%-16s %9.2f %9.2f %9.3f %9.0f %9.2f", n, w, u + s, (u + s) * 1000 / h, r / 1024, b - a}')")
	log "$name: wall ${wall}s, controller cpu $(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}')s, peak rss $((rss / 1024)) MiB (exit $status)"
	return "$status"
}

export PATCHKEEPER_ACTOR=scale-bench
phase observe "$PK" observe --repo "$FLEET" --parallel "$PARALLEL" --out "$WORK/observed.json" || {
	tail -5 "$WORK/observe.err" >&2
	exit 1
}
read -r KEX CIPHER < <(python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
hs = d["hosts"]
bad = [h["name"] for h in hs if h["status"]["state"] != "reachable"]
if bad: sys.exit("observe: %d hosts not reachable, e.g. %s" % (len(bad), bad[:3]))
c = hs[0]["connection"]
print(c["kex"], c["cipher"])' "$WORK/observed.json")
phase floor "$SIM" floor --fleet "$FLEET" --parallel "$PARALLEL" --kex "$KEX" --cipher "$CIPHER" || {
	cat "$WORK/floor.err" >&2
	exit 1
}
phase plan-observed "$PK" plan --repo "$FLEET" --observed "$WORK/observed.json" --json --out "$WORK/plan-observed.json"
phase plan "$PK" plan --repo "$FLEET" --json --out "$WORK/plan.json"
phase apply "$PK" apply --repo "$FLEET" --auto-approve --parallel "$PARALLEL" "$WORK/plan.json" || {
	tail -20 "$WORK/apply.err" >&2
	exit 1
}
phase report "$PK" report --repo "$FLEET" --json || true

kill -TERM "$SIM_PID"
wait "$SIM_PID" || true
SIM_PID=

python3 - "$WORK" "$HOSTS" <<'EOF'
import csv, json, sys
work, hosts = sys.argv[1], int(sys.argv[2])
plan = json.load(open(f"{work}/plan.json"))
planned = {h["host"]: h for h in plan["hosts"]}
state = {r["host"]: r for r in csv.DictReader(open(f"{work}/state.tsv"), delimiter="\t")}
problems = []
if len(state) != hosts:
    problems.append(f"simulator has {len(state)} hosts, expected {hosts}")
for name, s in state.items():
    p = planned.get(name)
    changes = len(p["changes"]) if p else 0
    if s["pending_security"] != "0":
        problems.append(f"{name}: {s['pending_security']} security updates still pending")
    if int(s["transactions"]) != (1 if changes else 0):
        problems.append(f"{name}: {s['transactions']} transactions, plan has {changes} changes")
    if int(s["changed"]) != changes:
        problems.append(f"{name}: {s['changed']} packages changed, plan named {changes}")
try:
    rep = json.load(open(f"{work}/report.out"))
    # `report --json` lists only the hosts needing attention, and the summary's counts.
    attention = rep.get("hosts", [])
    if attention:
        problems.append(f"report: {len(attention)} hosts need attention, e.g. {json.dumps(attention[0])[:300]}")
    print("report counts:", json.dumps(rep.get("summary", {}).get("counts")))
except Exception as e:
    problems.append(f"report unreadable: {e}")
total = sum(len(h["changes"]) for h in plan["hosts"])
print(f"correctness: {len(state)} hosts, {total} package changes planned and made; "
      + ("OK" if not problems else f"{len(problems)} PROBLEMS"))
for p in problems[:20]:
    print("  " + p)
sys.exit(1 if problems else 0)
EOF
ok=$?

printf '\npatchkeeper against %s simulated hosts (%s %% RPM, parallel %s, transaction %s ms, observe %s ms; load %s)\n' "$HOSTS" "$RPM" "$PARALLEL" "$TXN_MS" "$OBS_MS" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-16s %9s %9s %9s %9s %9s\n' phase "wall s" "cpu s" "cpu ms/h" "rss MiB" "sim cpu s"
printf '%s\n' "${ROWS[@]}"
awk -v f="$(awk '{print $1}' "$WORK/floor.time")" -v o="$(awk '{print $1}' "$WORK/observe.time")" \
	'BEGIN {printf "\nobserve wall / handshake floor wall: %.2fx (target <= 2x)\n", o / f}'
exit "$ok"
