#!/usr/bin/env bash
# benches/observe.sh — wall time of observing N lab hosts (default 50), median of R runs
# (default 5), for:
#   patchkeeper   `patchkeeper observe --no-refresh` (release build), one connection per host
#   ssh-samekex   the same script through OpenSSH, N in parallel (xargs -P N), with the key
#                 exchange, cipher and host key algorithm patchkeeper negotiated (the floor)
#   ssh-default   the same through OpenSSH with its defaults (sntrup761x25519 on OpenSSH 9.2)
#   ansible-raw   ansible-core from PyPI, `ansible all -f N -m raw` with the same script
#                 (fresh ControlPath dir per run so no run reuses another's connections)
# Every variant runs the identical script (`patchkeeper observe --print-script --no-refresh`).
#
# Usage: benches/observe.sh [--hosts N] [--runs R] [--no-ansible] [--keep]
# Needs root (the lab). Prints a table; exits non-zero if any variant fails on any host.
set -euo pipefail

HOSTS=50
RUNS=5
ANSIBLE=1
KEEP=0
while (($#)); do
	case $1 in
	--hosts) HOSTS=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--no-ansible) ANSIBLE=0; shift ;;
	--keep) KEEP=1; shift ;;
	*) echo "usage: $0 [--hosts N] [--runs R] [--no-ansible] [--keep]" >&2; exit 2 ;;
	esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB=${PATCHKEEPER_LAB_SCRIPT:-$ROOT/scripts/lab}
WORK=$(mktemp -d /tmp/pk-bench.XXXXXX)
DIR=$WORK/fleet
log() { printf 'bench: %s\n' "$*" >&2; }
cleanup() {
	if ((KEEP)); then
		log "kept lab $DIR"
	else
		"$LAB" down --dir "$DIR" >/dev/null 2>&1 || true
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

log "building patchkeeper (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
PK=$ROOT/target/release/patchkeeper

log "starting $HOSTS lab hosts"
"$LAB" up --hosts "$HOSTS" --rpm 0 --dir "$DIR" --owner-pid $$ >/dev/null

"$PK" observe --print-script --no-refresh >"$WORK/script.sh"
KEY=$DIR/.lab/id_ed25519
KNOWN=$DIR/.lab/known_hosts
python3 -c 'import json,sys; [print(h["port"]) for h in json.load(open(sys.argv[1]))["hosts"]]' "$DIR/lab.json" >"$WORK/ports"

# One warm-up observe, which also tells which algorithms patchkeeper negotiates.
"$PK" observe --no-refresh --repo "$DIR" --out "$WORK/observed.json" >/dev/null
read -r KEX CIPHER HOSTKEY < <(python3 -c 'import json,sys
h = json.load(open(sys.argv[1]))["hosts"][0]["connection"]
print(h["kex"], h["cipher"], h["hostKey"])' "$WORK/observed.json")
log "patchkeeper negotiated kex=$KEX cipher=$CIPHER hostkey=$HOSTKEY"

ms() { date +%s%3N; }

run_patchkeeper() {
	"$PK" observe --no-refresh --repo "$DIR" --parallel "$HOSTS" >/dev/null
}

# $@: extra ssh options
run_ssh() {
	local opts=("$@")
	# Each host's output must be complete (the end marker of the last section).
	xargs -P "$HOSTS" -I{} sh -c 'ssh -T -o BatchMode=yes -o ControlMaster=no -o ControlPath=none -i "$1" -o UserKnownHostsFile="$2" -o StrictHostKeyChecking=yes -p "$3" '"${opts[*]}"' root@127.0.0.1 sh -s <"$4" 2>/dev/null | grep -q "^@@pk:end locks [0-9]"' _ "$KEY" "$KNOWN" {} "$WORK/script.sh" <"$WORK/ports"
}
run_ssh_samekex() { run_ssh -o KexAlgorithms="$KEX" -o Ciphers="$CIPHER" -o HostKeyAlgorithms="$HOSTKEY"; }
run_ssh_default() { run_ssh; }

if ((ANSIBLE)); then
	VENV=${PATCHKEEPER_BENCH_VENV:-/var/tmp/patchkeeper-bench-venv}
	if [[ ! -x $VENV/bin/ansible ]]; then
		log "installing ansible-core from PyPI into $VENV"
		python3 -m venv "$VENV"
		"$VENV/bin/pip" install -q ansible-core
	fi
	{
		echo "[lab]"
		i=0
		while read -r port; do
			i=$((i + 1))
			echo "h$i ansible_host=127.0.0.1 ansible_port=$port"
		done <"$WORK/ports"
		echo "[lab:vars]"
		echo "ansible_user=root"
		echo "ansible_ssh_private_key_file=$KEY"
		echo "ansible_ssh_common_args='-o UserKnownHostsFile=$KNOWN -o StrictHostKeyChecking=yes'"
	} >"$WORK/inventory.ini"
	SCRIPT_TEXT=$(cat "$WORK/script.sh")
fi
run_ansible() {
	local cp
	cp=$(mktemp -d "$WORK/cp.XXXX")
	ANSIBLE_SSH_CONTROL_PATH_DIR=$cp ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_STDOUT_CALLBACK=minimal \
		"$VENV/bin/ansible" all -i "$WORK/inventory.ini" -f "$HOSTS" -m raw -a "$SCRIPT_TEXT" >"$WORK/ansible.out" 2>&1
	local ok
	# raw runs with a tty, so stderr's frames are mixed in: count stdout's (with exit status).
	ok=$(grep -c '^@@pk:end locks [0-9]' "$WORK/ansible.out" || true)
	[[ $ok == "$HOSTS" ]] || { log "ansible: only $ok of $HOSTS hosts answered"; return 1; }
}

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

variants=(patchkeeper ssh_samekex ssh_default)
((ANSIBLE)) && variants+=(ansible)
declare -A MEDIAN
for v in "${variants[@]}"; do
	times=()
	for ((r = 1; r <= RUNS; r++)); do
		t0=$(ms)
		"run_$v"
		t1=$(ms)
		times+=($((t1 - t0)))
	done
	MEDIAN[$v]=$(printf '%s\n' "${times[@]}" | median)
	log "$v: runs ${times[*]} ms, median ${MEDIAN[$v]} ms"
done

floor=${MEDIAN[ssh_samekex]}
printf '\nobserve of %s lab hosts, median of %s runs (kex %s, cipher %s)\n' "$HOSTS" "$RUNS" "$KEX" "$CIPHER"
printf '%-14s %10s %12s\n' variant "median ms" "vs floor"
for v in "${variants[@]}"; do
	awk -v n="$v" -v m="${MEDIAN[$v]}" -v f="$floor" 'BEGIN {printf "%-14s %10d %11.2fx\n", n, m, m / f}'
done
if ((ANSIBLE)); then
	awk -v a="${MEDIAN[ansible]}" -v p="${MEDIAN[patchkeeper]}" 'BEGIN {printf "\npatchkeeper is %.1fx faster than ansible-core -m raw\n", a / p}'
fi
