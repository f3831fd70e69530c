//! The process's open-files limit against the connections a run holds at once.
//!
//! Each SSH connection is one socket, so observing or applying with `parallel` 5,000
//! needs about 5,000 descriptors; the usual soft limit is 1,024. Left alone, the run would
//! fail host by host with `Too many open files` deep into the fleet (and a failure to open
//! the journal or a report file could follow). Instead, before any host is contacted, the
//! soft limit is raised as far as needed (the hard limit allows it without privilege, as
//! OpenSSH's and Go's runtimes do), and a run the hard limit cannot hold fails at once with
//! what to change.

/// Descriptors kept for everything that is not a host connection: standard streams, the
/// runtime's epoll and wakers, the resolver, known_hosts and key files, the journal, Git
/// and report files, the progress terminal.
pub const RESERVE: u64 = 128;

/// The run cannot hold `parallel` connections under the hard limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{parallel} connections at once need about {needed} open files, but this process may open at most {hard} (`ulimit -Hn`; LimitNOFILE= for a systemd service): raise the hard limit or lower the parallelism (--parallel, observe.parallel, the rollout's parallelism) to at most {fits}"
)]
pub struct OpenFilesError {
    /// Connections asked for.
    pub parallel: usize,
    /// Descriptors they need, with [`RESERVE`].
    pub needed: u64,
    /// The hard limit.
    pub hard: u64,
    /// The largest parallelism the hard limit holds.
    pub fits: u64,
}

/// The soft limit a run of `parallel` connections needs, given the current limits: `Ok(None)`
/// when the soft limit already suffices, `Ok(Some(n))` to raise it to `n`, an error when the
/// hard limit is too low. Pure.
pub fn soft_limit_for(
    parallel: usize,
    soft: u64,
    hard: u64,
) -> Result<Option<u64>, OpenFilesError> {
    let needed = (parallel as u64).saturating_add(RESERVE);
    if needed <= soft {
        return Ok(None);
    }
    if needed <= hard {
        return Ok(Some(needed));
    }
    Err(OpenFilesError {
        parallel,
        needed,
        hard,
        fits: hard.saturating_sub(RESERVE),
    })
}

/// Makes room for `parallel` connections: raises the soft open-files limit if needed, or
/// says why it cannot. Call before the first connection.
pub fn ensure(parallel: usize) -> Result<(), OpenFilesError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the local struct it is given a valid pointer to.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        // Nothing known to check against: the connections themselves will say.
        return Ok(());
    }
    // rlim_t is u64 on Linux.
    let (soft, hard) = (limit.rlim_cur, limit.rlim_max);
    if let Some(raised) = soft_limit_for(parallel, soft, hard)? {
        limit.rlim_cur = raised;
        // SAFETY: setrlimit reads the local struct; a soft limit at or below the hard one
        // needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(OpenFilesError {
                parallel,
                needed: raised,
                hard: soft,
                fits: soft.saturating_sub(RESERVE),
            });
        }
        tracing::debug!(from = soft, to = raised, "raised the open-files soft limit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_only_as_far_as_needed_and_the_hard_one_is_a_clear_error() {
        assert_eq!(soft_limit_for(50, 1024, 4096), Ok(None));
        assert_eq!(soft_limit_for(1000, 1024, 524_288), Ok(Some(1128)));
        assert_eq!(soft_limit_for(896, 1024, 1024), Ok(None));
        let e = soft_limit_for(5000, 1024, 4096).unwrap_err();
        assert_eq!((e.needed, e.hard, e.fits), (5128, 4096, 3968));
        assert!(
            e.to_string().starts_with(
                "5000 connections at once need about 5128 open files, but this process may open at most 4096"
            ),
            "{e}"
        );
        assert!(e.to_string().ends_with("to at most 3968"), "{e}");
        // A hard limit below the reserve still gives a sane answer.
        assert_eq!(soft_limit_for(10, 64, 64).unwrap_err().fits, 0);
    }
}
