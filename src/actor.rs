//! Who runs a command, for the audit trail (`Applied-By:`): `--actor`, else
//! `PATCHKEEPER_ACTOR`, else the CI system's own identity from its environment, else the
//! local user at the machine. Pure over an environment lookup, so each CI is unit-tested.

/// The actor for a run: `explicit` (`--actor`) when given, else what `env` says.
pub fn resolve(explicit: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> String {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if let Some(a) = explicit.filter(|a| !a.trim().is_empty()) {
        return a.trim().to_owned();
    }
    if let Some(a) = get("PATCHKEEPER_ACTOR") {
        return a.trim().to_owned();
    }
    // GitHub Actions: the user who triggered the workflow, and the run's page.
    if get("GITHUB_ACTIONS").as_deref() == Some("true") {
        let who = get("GITHUB_TRIGGERING_ACTOR")
            .or_else(|| get("GITHUB_ACTOR"))
            .unwrap_or_else(|| "unknown".into());
        let run = match (
            get("GITHUB_SERVER_URL"),
            get("GITHUB_REPOSITORY"),
            get("GITHUB_RUN_ID"),
        ) {
            (Some(server), Some(repo), Some(id)) => {
                format!(" ({server}/{repo}/actions/runs/{id})")
            }
            _ => String::new(),
        };
        return format!("{who} via GitHub Actions{run}");
    }
    // GitLab CI: the user who started the pipeline, and the job's page.
    if get("GITLAB_CI").as_deref() == Some("true") {
        let who = get("GITLAB_USER_LOGIN").unwrap_or_else(|| "unknown".into());
        let job = get("CI_JOB_URL")
            .map(|u| format!(" ({u})"))
            .unwrap_or_default();
        return format!("{who} via GitLab CI{job}");
    }
    // Jenkins: BUILD_USER_ID needs the build-user-vars plugin; the build's page always.
    if get("JENKINS_URL").is_some() {
        let who = get("BUILD_USER_ID").unwrap_or_else(|| "unknown".into());
        let build = get("BUILD_URL")
            .map(|u| format!(" ({u})"))
            .unwrap_or_default();
        return format!("{who} via Jenkins{build}");
    }
    // Buildkite: the build's creator.
    if get("BUILDKITE").as_deref() == Some("true") {
        let who = get("BUILDKITE_BUILD_CREATOR_EMAIL")
            .or_else(|| get("BUILDKITE_BUILD_CREATOR"))
            .unwrap_or_else(|| "unknown".into());
        let build = get("BUILDKITE_BUILD_URL")
            .map(|u| format!(" ({u})"))
            .unwrap_or_default();
        return format!("{who} via Buildkite{build}");
    }
    let user = get("SUDO_USER")
        .map(|s| format!("{s} (sudo)"))
        .or_else(|| get("USER"))
        .or_else(|| get("LOGNAME"))
        .unwrap_or_else(|| "unknown".into());
    match get("HOSTNAME") {
        Some(host) => format!("{user}@{host}"),
        None => user,
    }
}

/// [`resolve`] over the process environment (and the kernel's host name when `HOSTNAME`
/// is not exported, as in most non-interactive shells).
pub fn current(explicit: Option<&str>) -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned());
    resolve(explicit, &|k| {
        std::env::var(k)
            .ok()
            .or_else(|| (k == "HOSTNAME").then(|| hostname.clone()).flatten())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_flag_wins_then_the_variable() {
        let e = env(&[("PATCHKEEPER_ACTOR", "ops-bot"), ("USER", "root")]);
        assert_eq!(resolve(Some("alice"), &e), "alice");
        assert_eq!(resolve(None, &e), "ops-bot");
        assert_eq!(resolve(Some("  "), &e), "ops-bot");
    }

    #[test]
    fn each_ci_names_its_user_and_run() {
        let gh = env(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_ACTOR", "octocat"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "acme/fleet"),
            ("GITHUB_RUN_ID", "42"),
            ("USER", "runner"),
        ]);
        assert_eq!(
            resolve(None, &gh),
            "octocat via GitHub Actions (https://github.com/acme/fleet/actions/runs/42)"
        );
        let gl = env(&[
            ("GITLAB_CI", "true"),
            ("GITLAB_USER_LOGIN", "bob"),
            ("CI_JOB_URL", "https://gitlab.example/j/7"),
        ]);
        assert_eq!(
            resolve(None, &gl),
            "bob via GitLab CI (https://gitlab.example/j/7)"
        );
        let jk = env(&[
            ("JENKINS_URL", "https://ci/"),
            ("BUILD_URL", "https://ci/job/p/3/"),
        ]);
        assert_eq!(
            resolve(None, &jk),
            "unknown via Jenkins (https://ci/job/p/3/)"
        );
        let bk = env(&[("BUILDKITE", "true"), ("BUILDKITE_BUILD_CREATOR", "Eve")]);
        assert_eq!(resolve(None, &bk), "Eve via Buildkite");
    }

    #[test]
    fn otherwise_the_local_user_at_the_machine() {
        let e = env(&[
            ("USER", "root"),
            ("SUDO_USER", "carol"),
            ("HOSTNAME", "ctl"),
        ]);
        assert_eq!(resolve(None, &e), "carol (sudo)@ctl");
        assert_eq!(resolve(None, &env(&[("USER", "dan")])), "dan");
        assert_eq!(resolve(None, &env(&[])), "unknown");
    }
}
