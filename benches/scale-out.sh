#!/usr/bin/env bash
# benches/scale-out.sh — one reconcile round of `serve --cluster` with 1, 2 and 3 replicas
# against N simulated hosts that speak real SSH (benches/fleetsim, docs/scale.md), on a
# real nats-server: how the round's observation (work items on a JetStream work queue,
# docs/scale-out.md) spreads over the replicas, and what each replica spends.
#
# Per replica count it starts a fresh nats-server and the replicas on one fleet repo (each
# with its own cache and HOME), waits for the first round (the leader's, taken while the
# others may still be starting), then asks the leader for a second round over the API
# (POST /api/v1/reconcile) and measures that one. Replica count 0 is `serve` without
# `--cluster` (no server, no queue: the baseline):
#   round s     from the request to the leader's `round done` (observe, the leader's dry
#               runs and plan, the report commit)
#   observe s   from the request to the leader's last `observed` line (every host's
#               observation in hand)
#   items       hosts observed by each replica in that round, leader first
#   cpu s       user + sys of each replica over the round, leader first
#   sim cpu s   the simulator's CPU over the round (it shares the machine)
#
# Usage: benches/scale-out.sh [--hosts N] [--replicas 0,1,2,3] [--observe-ms MS]
#                             [--base-octet B] [--port PORT] [--keep]
# Loopback only (127.B.x.y). Needs the pinned nats-server (`scripts/lab deps`) or
# PATCHKEEPER_NATS_SERVER, and `ulimit -Hn` >= 3 * N + 2048.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
echo "scale-out: building patchkeeper and fleetsim (release)" >&2
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin patchkeeper --example fleetsim
hard=$(ulimit -Hn)
ulimit -n "$hard"
exec python3 - "$ROOT" "$@" <<'EOF'
import argparse, json, os, re, shutil, signal, subprocess, sys, tempfile, threading, time
import urllib.request
from datetime import datetime

root = sys.argv[1]
ap = argparse.ArgumentParser(prog="benches/scale-out.sh")
ap.add_argument("--hosts", type=int, default=300)
ap.add_argument("--replicas", default="0,1,2,3")
ap.add_argument("--observe-ms", type=int, default=300)
ap.add_argument("--base-octet", type=int, default=101)
ap.add_argument("--port", type=int, default=2222)
ap.add_argument("--keep", action="store_true")
args = ap.parse_args(sys.argv[2:])
counts = [int(r) for r in args.replicas.split(",")]
pk = f"{root}/target/release/patchkeeper"
simbin = f"{root}/target/release/examples/fleetsim"
nats_bin = os.environ.get("PATCHKEEPER_NATS_SERVER", "/opt/patchkeeper-nats-server-2.15.1/bin/nats-server")
work = tempfile.mkdtemp(prefix="pk-scale-out.")
fleet = f"{work}/fleet"
procs = []
clk = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"scale-out: {msg}", file=sys.stderr, flush=True)


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / clk


def wait_for(what, within, check):
    deadline = time.time() + within
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            sys.exit(f"scale-out: timed out waiting for {what} (kept {work})")
        time.sleep(0.2)


def lines(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return out


def when(entry):
    # tracing's RFC 3339 with up to 9 fractional digits; Python reads 6.
    ts = re.sub(r"(\.\d{6})\d*", r"\1", entry["timestamp"]).replace("Z", "+00:00")
    return datetime.fromisoformat(ts).timestamp()


def message(entry):
    return entry.get("fields", {}).get("message", "")


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    if args.keep:
        log(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


try:
    os.makedirs(fleet)
    sim_out = open(f"{work}/sim.out", "w")
    sim = subprocess.Popen(
        [simbin, "serve", "--hosts", str(args.hosts), "--fleet", fleet,
         "--base-octet", str(args.base_octet), "--port", str(args.port),
         "--parallelism", str(min(args.hosts, 1000)), "--observe-ms", str(args.observe_ms),
         "--dry-run-ms", str(args.observe_ms), "--transaction-ms", "3000",
         "--state-out", f"{work}/state.tsv"],
        stdout=sim_out, stderr=open(f"{work}/sim.err", "w"))
    procs.append(sim)
    wait_for("the simulator", 120, lambda: "listening" in open(f"{work}/sim.out").read())
    token = json.loads(subprocess.check_output(
        [pk, "token", "new", "--json", "--name", "bench", "--scope", "admin"]))
    with open(f"{fleet}/patchkeeper.yaml", "a") as f:
        f.write(f"  api:\n    tokens:\n      - name: bench\n        sha256: {token['entry']['sha256']}\n        scopes: [admin]\n")
    git = ["git", "-C", fleet, "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.check_call(git + ["init", "-q"])
    subprocess.check_call(git + ["add", "-A"])
    subprocess.check_call(git + ["commit", "-qm", f"simulated fleet of {args.hosts} hosts"])

    rows = []
    for count in counts:
        base = f"{work}/r{count}"
        os.makedirs(f"{base}/nats")
        nats_log = f"{base}/nats/server.log"
        nats = None
        cluster = []
        if count:
            nats = subprocess.Popen(
                [nats_bin, "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", f"{base}/nats/store",
                 "-l", nats_log], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(nats)

            def nats_port():
                try:
                    text = open(nats_log).read()
                except FileNotFoundError:
                    return None
                m = re.search(r"Listening for client connections on [\d.]+:(\d+)", text)
                return m and "Server is ready" in text and int(m.group(1))

            url = f"nats://127.0.0.1:{wait_for('nats-server', 60, nats_port)}"
            cluster = ["--cluster", url, "--cluster-ttl", "5s"]
        replicas = []
        for i in range(max(count, 1)):
            home = f"{base}/home-{i}"
            os.makedirs(home)
            err = f"{base}/replica-{i}.log"
            env = dict(os.environ, HOME=home, PATCHKEEPER_LOG="info", NO_COLOR="1")
            p = subprocess.Popen(
                [pk, "--log-format", "json", "serve", "--listen", "127.0.0.1:0",
                 "--interval", "1h", *cluster,
                 "--repo", fleet, "--cache", f"{base}/cache-{i}"],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=open(err, "w"))
            procs.append(p)
            replicas.append((p, err))
        for p, err in replicas:
            wait_for("a replica to validate", 300, lambda: any(
                message(e) == "desired commit validated" for e in lines(err)))
        wait_for("the first round", 1800, lambda: any(
            message(e) == "round done" for _, err in replicas for e in lines(err)))
        if count:
            status = json.loads(subprocess.check_output(
                [pk, "cluster", "status", "--cluster", url, "--json"]))
            leader_pid = int(status["leader"]["replica"].rsplit("-", 2)[1])
            leader = next(r for r in replicas if r[0].pid == leader_pid)
        else:
            leader = replicas[0]
        ordered = [leader] + [r for r in replicas if r is not leader]
        address = next(e["fields"]["address"] for e in lines(leader[1])
                       if "address" in e.get("fields", {}))
        cpu0 = [cpu(p.pid) for p, _ in ordered]
        sim0 = cpu(sim.pid)
        t0 = time.time()
        req = urllib.request.Request(f"http://{address}/api/v1/reconcile", method="POST",
                                     headers={"Authorization": f"Bearer {token['token']}"})
        with urllib.request.urlopen(req) as r:
            assert r.status == 202, r.status
        wait_for("the measured round", 1800, lambda: sum(
            message(e) == "round done" for e in lines(leader[1])) >= 2)
        t1 = time.time()
        cpu1 = [cpu(p.pid) for p, _ in ordered]
        sim1 = cpu(sim.pid)
        last = max(when(e) for e in lines(leader[1])
                   if message(e) == "observed" and when(e) >= t0)
        items = [args.hosts]
        if count:
            items = []
            for _, err in ordered:
                done = [e for e in lines(err)
                        if message(e) == "work queue: batch done" and when(e) >= t0]
                items.append(sum(int(e["fields"]["items"]) for e in done))
            if sum(items) != args.hosts:
                sys.exit(f"scale-out: {sum(items)} hosts observed through the queue, expected {args.hosts} (kept {work})")
        rows.append((count, t1 - t0, last - t0, items,
                     [b - a for a, b in zip(cpu0, cpu1)], sim1 - sim0))
        log(f"{count} replica(s): round {t1 - t0:.1f} s, observe {last - t0:.1f} s, items {items}")
        for p, _ in replicas:
            p.send_signal(signal.SIGTERM)
        for p, _ in replicas:
            p.wait(timeout=120)
        if nats:
            nats.terminate()
            nats.wait()

    load = open("/proc/loadavg").read().split()[:3]
    print(f"\n`serve --cluster` round over {args.hosts} simulated hosts (observe {args.observe_ms} ms; load {' '.join(load)}; {os.cpu_count()} cores)")
    print(f"{'replicas':>8} {'round s':>8} {'observe s':>9} {'hosts/s':>8}  {'items (leader first)':<22} {'cpu s (leader first)':<24} {'sim cpu s':>9}")
    for count, rnd, obs, items, cpus, simc in rows:
        print(f"{count:>8} {rnd:>8.1f} {obs:>9.1f} {args.hosts / obs:>8.1f}  {str(items):<22} {' '.join(f'{c:.1f}' for c in cpus):<24} {simc:>9.1f}")
finally:
    cleanup()
EOF
