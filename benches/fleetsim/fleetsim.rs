//! `fleetsim`: a simulated fleet of Debian 12 and Rocky Linux 9 (RPM/dnf) hosts speaking real SSH, for benchmarking
//! patchkeeper at thousands of hosts on one machine (`benches/scale.sh`, `docs/scale.md`).
//! Not part of the shipped binary: an example target.
//!
//! ```text
//! cargo run --release --example fleetsim -- serve --hosts 1000 --fleet /tmp/fleet
//! cargo run --release --example fleetsim -- floor --fleet /tmp/fleet --parallel 1000
//! ```

mod sim;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    about = "A simulated fleet of Debian 12 and RPM/dnf hosts speaking real SSH (benchmarks only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start N simulated hosts and write a fleet repo for them; serve until SIGTERM/SIGINT,
    /// then write the hosts' final state (--state-out).
    Serve {
        /// Number of hosts (at most 64,000 per base octet range).
        #[arg(long, default_value_t = 100)]
        hosts: usize,
        /// Seed of host keys, package sets, pending updates and boot ids.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write the fleet repo (inventory, settings, key, known_hosts).
        #[arg(long)]
        fleet: PathBuf,
        /// Hosts listen on 127.BASE.0.1, 127.BASE.0.2, … (250 per /24).
        #[arg(long, default_value_t = 100)]
        base_octet: u8,
        /// The port every host listens on; 0: an ephemeral port each.
        #[arg(long, default_value_t = 2222)]
        port: u16,
        /// The rollout's parallelism in the written fleet repo.
        #[arg(long, default_value_t = 500)]
        parallelism: usize,
        /// Delay of the observation script, in milliseconds.
        #[arg(long, default_value_t = 300)]
        observe_ms: u64,
        /// Delay of a dependency dry run, in milliseconds.
        #[arg(long, default_value_t = 300)]
        dry_run_ms: u64,
        /// Duration of a package transaction, in milliseconds.
        #[arg(long, default_value_t = 3000)]
        transaction_ms: u64,
        /// Delay of any other command, in milliseconds.
        #[arg(long, default_value_t = 5)]
        command_ms: u64,
        /// Time a reboot takes, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        reboot_ms: u64,
        /// Percent of hosts whose transaction leaves /run/reboot-required.
        #[arg(long, default_value_t = 0)]
        reboot_percent: u64,
        /// Percent of hosts that are RPM/dnf hosts (Rocky Linux 9); the rest are Debian 12.
        #[arg(long, default_value_t = 0)]
        rpm_percent: u64,
        /// Write the hosts' final state here on SIGTERM/SIGINT (and on SIGUSR1).
        #[arg(long)]
        state_out: Option<PathBuf>,
    },
    /// The handshake floor: one plain connection + login per host of a fleet `serve` wrote.
    Floor {
        /// The fleet repo `serve` wrote.
        #[arg(long)]
        fleet: PathBuf,
        /// Connections at once.
        #[arg(long, default_value_t = 1000)]
        parallel: usize,
        /// Key exchange (as patchkeeper negotiates it).
        #[arg(long, default_value = "curve25519-sha256")]
        kex: String,
        /// Cipher.
        #[arg(long, default_value = "chacha20-poly1305@openssh.com")]
        cipher: String,
        /// The seed `serve` used (the client key derives from it).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage with a valid pointer to a zeroed local struct.
    let r = unsafe {
        let mut r: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut r);
        r
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(r.ru_utime), s(r.ru_stime))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fleetsim: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleetsim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            hosts,
            seed,
            fleet,
            base_octet,
            port,
            parallelism,
            observe_ms,
            dry_run_ms,
            transaction_ms,
            command_ms,
            reboot_ms,
            reboot_percent,
            rpm_percent,
            state_out,
        } => {
            let limit = sim::raise_nofile();
            if limit < hosts as u64 + 1024 {
                return Err(format!(
                    "{hosts} hosts need more open files than the limit allows ({limit}); raise `ulimit -Hn`"
                ));
            }
            let started = Instant::now();
            let sim = Arc::new(sim::Sim::new(sim::Options {
                hosts,
                seed,
                base_octet,
                port,
                delays: sim::Delays {
                    observe: Duration::from_millis(observe_ms),
                    dry_run: Duration::from_millis(dry_run_ms),
                    transaction: Duration::from_millis(transaction_ms),
                    command: Duration::from_millis(command_ms),
                    reboot: Duration::from_millis(reboot_ms),
                },
                reboot_percent,
                rpm_percent,
            }));
            sim.start().await.map_err(|e| e.to_string())?;
            sim.write_fleet(&fleet, parallelism)
                .map_err(|e| format!("writing the fleet repo {}: {e}", fleet.display()))?;
            println!(
                "fleetsim: {hosts} hosts listening ({} ms), fleet repo {}",
                started.elapsed().as_millis(),
                fleet.display()
            );
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
            let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
            let mut usr1 = signal(SignalKind::user_defined1()).map_err(|e| e.to_string())?;
            let write_state = |sim: &sim::Sim| -> Result<(), String> {
                if let Some(path) = &state_out {
                    std::fs::write(path, sim.state_report())
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                Ok(())
            };
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = usr1.recv() => write_state(&sim)?,
                }
            }
            write_state(&sim)?;
            let (user, sys) = cpu_seconds();
            eprintln!(
                "fleetsim: {} connections, {} commands ({} not simulated); cpu user {user:.2}s sys {sys:.2}s",
                sim.counters.connections.load(std::sync::atomic::Ordering::Relaxed),
                sim.counters.commands.load(std::sync::atomic::Ordering::Relaxed),
                sim.counters.unknown.load(std::sync::atomic::Ordering::Relaxed),
            );
            Ok(())
        }
        Command::Floor {
            fleet,
            parallel,
            kex,
            cipher,
            seed,
        } => {
            sim::raise_nofile();
            let hosts = sim::read_hosts(&fleet.join(".sim/hosts.tsv"))?;
            let key = sim::derived_key(seed, u64::MAX);
            let started = Instant::now();
            let (u0, s0) = cpu_seconds();
            let failed = sim::handshake_floor(&hosts, key, parallel, &kex, &cipher).await?;
            let wall = started.elapsed();
            let (u1, s1) = cpu_seconds();
            println!(
                "floor hosts={} failed={failed} wall_ms={} cpu_ms={:.0} kex={kex} cipher={cipher}",
                hosts.len(),
                wall.as_millis(),
                (u1 - u0 + s1 - s0) * 1000.0
            );
            if failed > 0 {
                return Err(format!("{failed} of {} handshakes failed", hosts.len()));
            }
            Ok(())
        }
    }
}
