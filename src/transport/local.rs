//! The local transport: the same commands as over SSH, run with `sh -c` on the machine
//! patchkeeper runs on (for patching the controller itself).

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BoxFuture, Capture, ExecOptions, Output, Transport, TransportError};

/// Runs commands on this machine.
#[derive(Debug, Clone, Default)]
pub struct LocalTransport {
    /// Wrap every command in `sudo -n`.
    pub sudo: bool,
}

impl LocalTransport {
    /// A local transport, escalating with `sudo -n` when `sudo` is set.
    pub fn new(sudo: bool) -> LocalTransport {
        LocalTransport { sudo }
    }
}

impl Transport for LocalTransport {
    fn exec_with<'a>(
        &'a self,
        command: &'a str,
        stdin: Option<&'a [u8]>,
        options: ExecOptions,
    ) -> BoxFuture<'a, Result<Output, TransportError>> {
        Box::pin(async move {
            // A transaction must outlive its session (never cut short by a closed channel).
            let inner = if options.transaction && stdin.is_none() {
                super::detach_transaction(command)
            } else {
                command.to_string()
            };
            let wrapped = if self.sudo {
                super::sudo_wrap(&inner)
            } else {
                inner
            };
            let mut child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&wrapped)
                .stdin(if stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // A timed-out command must not outlive the run; a package transaction is
                // never signalled.
                .kill_on_drop(!options.transaction)
                .spawn()
                .map_err(TransportError::Spawn)?;
            if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
                let data = data.to_vec();
                // Written from a task so a command that prints before reading cannot deadlock.
                tokio::spawn(async move {
                    let _ = pipe.write_all(&data).await;
                });
            }
            let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
                return Err(TransportError::Spawn(std::io::Error::other(
                    "the command's output pipes are missing",
                )));
            };
            let mut capture = Capture::new(&options);
            let collect = async {
                let (mut out_buf, mut err_buf) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
                let (mut out_open, mut err_open) = (true, true);
                // Until both pipes close (a child holding them open keeps this going until
                // the deadline), then the exit status.
                while out_open || err_open {
                    let kept = tokio::select! {
                        n = out.read(&mut out_buf), if out_open => match n.map_err(TransportError::Spawn)? {
                            0 => { out_open = false; Ok(()) }
                            n => capture.stdout(&out_buf[..n]),
                        },
                        n = err.read(&mut err_buf), if err_open => match n.map_err(TransportError::Spawn)? {
                            0 => { err_open = false; Ok(()) }
                            n => capture.stderr(&err_buf[..n]),
                        },
                    };
                    if kept.is_err() {
                        return Ok(None);
                    }
                }
                let status = child.wait().await.map_err(TransportError::Spawn)?;
                Ok::<_, TransportError>(Some(status))
            };
            let ended = match options.deadline {
                Some(d) => tokio::time::timeout(d, collect).await,
                None => Ok(collect.await),
            };
            let seconds = options.deadline.map_or(0, |d| d.as_secs());
            match ended {
                Ok(Ok(Some(status))) => {
                    Ok(capture.finish(status.code().and_then(|c| u32::try_from(c).ok())))
                }
                Ok(Ok(None)) => {
                    let _ = child.start_kill();
                    Err(TransportError::OutputTooLarge {
                        command: super::command_label(command),
                        limit: options.max_output,
                    })
                }
                Ok(Err(e)) => Err(e),
                // Dropping the child kills an ordinary command (kill_on_drop); a transaction
                // runs on.
                Err(_) if options.transaction => Err(TransportError::Abandoned { seconds }),
                Err(_) => Err(TransportError::CommandTimeout { seconds }),
            }
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn runs_with_stdin_and_reports_exit_and_stderr() {
        let t = LocalTransport::new(false);
        let out = t
            .exec(
                "cat; echo oops >&2; exit 3",
                Some(b"hello"),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr_text(), "oops");
        assert_eq!(out.exit, Some(3));
    }

    #[tokio::test]
    async fn a_flood_is_stopped_at_the_cap() {
        let t = LocalTransport::new(false);
        let mut options = ExecOptions::command(Duration::from_secs(60));
        options.max_output = 1 << 20;
        let err = t.exec_with("yes flood", None, options).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "`yes flood` printed more than 1 MiB of output, the limit per command; it was stopped"
        );
    }

    #[tokio::test]
    async fn a_child_holding_the_output_open_ends_at_the_deadline() {
        let t = LocalTransport::new(false);
        let err = t
            .exec("sleep 5 & echo started", None, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::CommandTimeout { .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_transaction_past_its_deadline_is_left_running() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("done");
        let gate = dir.path().join("gate");
        let t = LocalTransport::new(false);
        // Released, it goes on printing (as dpkg does, `Setting up …`) after patchkeeper
        // stopped reading: it must not die of SIGPIPE on the closed pipes.
        let script = format!(
            "while [ ! -e {g} ]; do sleep 0.05; done; echo setting up; echo warning >&2; touch {d}",
            g = gate.display(),
            d = done.display()
        );
        let err = t
            .exec_with(
                &script,
                None,
                ExecOptions::transaction(Some(Duration::from_millis(200))),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Abandoned { .. }), "{err}");
        // Not signalled, not cut short: released, it finishes its work.
        std::fs::write(&gate, "").unwrap();
        let start = std::time::Instant::now();
        while !done.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the transaction was killed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn times_out() {
        let t = LocalTransport::new(false);
        let err = t
            .exec("sleep 5", None, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::CommandTimeout { .. }),
            "{err}"
        );
    }
}
