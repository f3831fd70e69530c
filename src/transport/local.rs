//! The local transport: the same commands as over SSH, run with `sh -c` on the machine
//! patchkeeper runs on (for patching the controller itself).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{BoxFuture, Output, Transport, TransportError};

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
    fn exec<'a>(
        &'a self,
        command: &'a str,
        stdin: Option<&'a [u8]>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Output, TransportError>> {
        Box::pin(async move {
            let command = if self.sudo {
                super::sudo_wrap(command)
            } else {
                command.to_string()
            };
            let mut child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .stdin(if stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // A timed-out command must not outlive the run.
                .kill_on_drop(true)
                .spawn()
                .map_err(TransportError::Spawn)?;
            if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
                let data = data.to_vec();
                // Written from a task so a command that prints before reading cannot deadlock.
                tokio::spawn(async move {
                    let _ = pipe.write_all(&data).await;
                });
            }
            match tokio::time::timeout(timeout, child.wait_with_output()).await {
                Ok(result) => {
                    let out = result.map_err(TransportError::Spawn)?;
                    Ok(Output {
                        exit: out.status.code().and_then(|c| u32::try_from(c).ok()),
                        stdout: out.stdout,
                        stderr: out.stderr,
                    })
                }
                Err(_) => Err(TransportError::CommandTimeout {
                    seconds: timeout.as_secs(),
                }),
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
