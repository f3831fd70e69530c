#!/usr/bin/env bash
# Benchmark of the lab (issue 4): `scripts/lab up --hosts N` with cached images must finish
# within 20 s for N=50, and a simulated reboot must bring the host back within a few seconds.
# Prints the figures; exits 1 when the 20 s budget is exceeded. Needs root.
#   benches/lab_up.sh [HOSTS]        (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=${1:-50}
budget_ms=20000

scripts/lab build >/dev/null 2>&1
dir=$(mktemp -u /tmp/pk-lab-bench-XXXXXX)
trap 'scripts/lab down --dir "$dir" >/dev/null 2>&1 || true' EXIT

t0=$(date +%s%3N)
scripts/lab up --hosts "$hosts" --rpm 0 --dir "$dir" >/dev/null 2>"$dir.log" || {
	cat "$dir.log" >&2
	exit 1
}
up_ms=$(($(date +%s%3N) - t0))

t0=$(date +%s%3N)
for i in $(seq 1 "$hosts"); do
	scripts/lab ssh "deb-$i" --dir "$dir" true &
done
wait
ssh_ms=$(($(date +%s%3N) - t0))

old=$(scripts/lab ssh deb-1 --dir "$dir" cat /proc/sys/kernel/random/boot_id)
t0=$(date +%s%3N)
scripts/lab ssh deb-1 --dir "$dir" reboot 2>/dev/null
while :; do
	new=$(scripts/lab ssh deb-1 --dir "$dir" cat /proc/sys/kernel/random/boot_id 2>/dev/null || true)
	[[ -n $new && $new != "$old" ]] && break
	sleep 0.1
done
reboot_ms=$(($(date +%s%3N) - t0))

t0=$(date +%s%3N)
scripts/lab down --dir "$dir" >/dev/null 2>&1
down_ms=$(($(date +%s%3N) - t0))
trap - EXIT
rm -f "$dir.log"

printf 'lab up --hosts %s: %d ms (budget %d ms)\n' "$hosts" "$up_ms" "$budget_ms"
printf 'ssh to all %s hosts at once: %d ms\n' "$hosts" "$ssh_ms"
printf 'simulated reboot (reboot -> new boot id over ssh): %d ms\n' "$reboot_ms"
printf 'lab down of %s hosts: %d ms\n' "$hosts" "$down_ms"
printf 'load average: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
((up_ms <= budget_ms)) || {
	echo "FAIL: up took longer than the budget" >&2
	exit 1
}
