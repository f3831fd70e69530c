//! The `patchkeeper` binary for end-to-end tests, and a readable dump of a finished command
//! for assertion messages.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use assert_cmd::cargo::CommandCargoExt;

/// `patchkeeper` run in `dir`, without colors and without standard input.
pub fn patchkeeper(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("patchkeeper").expect("the binary is built");
    cmd.current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs `patchkeeper ARGS` in `dir`.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    patchkeeper(dir)
        .args(args)
        .output()
        .expect("patchkeeper runs")
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A command running in the background whose output is collected as it comes, so a test can
/// wait for a line that proves a state ("waiting for the lock") instead of sleeping.
pub struct Running {
    child: std::process::Child,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    mut pipe: impl std::io::Read + Send + 'static,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    std::thread::JoinHandle<()>,
) {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = buf.clone();
    let reader = std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (buf, reader)
}

impl Running {
    /// Spawns `cmd` with stdout and stderr piped and collected.
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the command starts");
        let (stdout, out_reader) = collect(child.stdout.take().expect("piped"));
        let (stderr, err_reader) = collect(child.stderr.take().expect("piped"));
        Running {
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Standard error so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits (up to `timeout`) until standard error contains `needle`; panics with the output
    /// so far when the process exits or the time is up first.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: std::time::Duration) {
        self.wait_until(needle, timeout, |stderr| stderr.contains(needle));
    }

    /// Waits (up to `timeout`) until `done(stderr so far)` holds; panics naming `what` with
    /// the output so far when the process exits or the time is up first.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: std::time::Duration,
        done: impl Fn(&str) -> bool,
    ) {
        let needle = what;
        let start = std::time::Instant::now();
        while !done(&self.stderr()) {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // The pipes close with the process: read the last bytes before judging.
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                assert!(
                    done(&self.stderr()),
                    "exited ({status}) before printing `{needle}`:\n{}",
                    self.stderr()
                );
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "no `{needle}` within {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Whether the process has exited (it is reaped then; [`Running::wait`] still returns its
    /// output).
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_some()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The buffer standard error is collected into (a watchdog reads it from another thread).
    pub fn stderr_buffer(&self) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
        self.stderr.clone()
    }

    /// Sends SIGKILL.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill");
    }

    /// Waits for the process and returns everything it printed.
    pub fn wait(mut self) -> Output {
        let status = self.child.wait().expect("wait");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Output {
            status,
            stdout: std::mem::take(&mut *self.stdout.lock().unwrap()),
            stderr: std::mem::take(&mut *self.stderr.lock().unwrap()),
        }
    }
}

impl Running {
    /// Waits for the process like [`Running::wait`] and also returns its peak resident set
    /// size in KiB (`ru_maxrss` of `wait4`: the kernel's own high-water mark, exact at exit).
    pub fn wait_with_peak_rss(mut self) -> (Output, u64) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        let mut status: libc::c_int = 0;
        // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our own unreaped child; status and usage point to live locals. std's
        // Child is never waited for afterwards (it does not wait on drop).
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        use std::os::unix::process::ExitStatusExt;
        let out = Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout: std::mem::take(&mut *self.stdout.lock().unwrap()),
            stderr: std::mem::take(&mut *self.stderr.lock().unwrap()),
        };
        (out, u64::try_from(usage.ru_maxrss).unwrap_or(0))
    }
}
