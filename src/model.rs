//! The fleet-repo model: the typed documents a fleet repo holds (`Settings`, `Inventory`,
//! `Baseline`, `MaintenanceWindow`, `Rollout`, `PatchRequest`).
//!
//! This module knows nothing about YAML positions, SSH or Git: it is plain serde data, and
//! the JSON Schemas in `schemas/` are generated from it (see [`crate::schema`]). Durations,
//! cron expressions, time zones and versions are kept as the user wrote them (strings) so
//! that validation can point at them; [`crate::validate`] checks that they parse.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only `apiVersion` this release understands.
pub const API_VERSION: &str = "patchkeeper.dev/v1";

/// Every document kind, as written in the `kind` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Fleet-wide settings (`patchkeeper.yaml`).
    Settings,
    /// Hosts and groups.
    Inventory,
    /// What must be installed or updated on which hosts.
    Baseline,
    /// When hosts may be changed.
    MaintenanceWindow,
    /// How changes roll out.
    Rollout,
    /// An urgent one-off patch request.
    PatchRequest,
    /// An accepted risk: advisories exempt from deadlines, with an owner and an expiry.
    VulnerabilityException,
}

impl Kind {
    /// All kinds, in the order schemas and docs list them.
    pub const ALL: [Kind; 7] = [
        Kind::Settings,
        Kind::Inventory,
        Kind::Baseline,
        Kind::MaintenanceWindow,
        Kind::Rollout,
        Kind::PatchRequest,
        Kind::VulnerabilityException,
    ];

    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Settings => "Settings",
            Kind::Inventory => "Inventory",
            Kind::Baseline => "Baseline",
            Kind::MaintenanceWindow => "MaintenanceWindow",
            Kind::Rollout => "Rollout",
            Kind::PatchRequest => "PatchRequest",
            Kind::VulnerabilityException => "VulnerabilityException",
        }
    }

    /// Parses the `kind` field.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Kubernetes-style document envelope around one kind's `spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document<S> {
    /// Always `patchkeeper.dev/v1`.
    pub api_version: String,
    /// The document kind.
    pub kind: String,
    /// Name and free-form labels.
    pub metadata: Metadata,
    /// The kind-specific content.
    pub spec: S,
}

/// `metadata` of every document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// A name of lowercase letters, digits, `-`, `.` and `_` (unique among documents of the
    /// same kind).
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?$"))]
    pub name: String,
    /// Free-form labels (not used for selection).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------------------
// Settings

/// `kind: Settings` — fleet-wide settings; at most one per fleet repo.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SettingsSpec {
    /// Where and how compliance reports are committed.
    #[serde(default)]
    pub reports: ReportSettings,
    /// The reconciler (`patchkeeper serve`).
    #[serde(default)]
    pub reconcile: ReconcileSettings,
    /// SSH defaults for every host (hosts may override).
    #[serde(default)]
    pub ssh: SshSettings,
    /// Observation options.
    #[serde(default)]
    pub observe: ObserveSettings,
    /// Apply options.
    #[serde(default)]
    pub apply: ApplySettings,
    /// The HTTP API of `patchkeeper serve --listen`: who may call it, and where patch
    /// requests made through it go.
    #[serde(default)]
    pub api: ApiSettings,
    /// Advisory data: what `serve` re-imports, how old it may get, OS-to-ecosystem mapping.
    #[serde(default)]
    pub advisories: AdvisorySettings,
    /// Alerts `serve` sends to webhooks (`docs/alerts.md`).
    #[serde(default)]
    pub notifications: NotificationSettings,
    /// Rapid response: which findings `serve` turns into proposed patch requests
    /// (`docs/rapid-response.md`).
    #[serde(default)]
    pub rapid_response: RapidResponseSettings,
}

/// Rapid response (`docs/rapid-response.md`): a finding at or above `minSeverity`, whose
/// fix the host's repositories offer and that no exception covers, makes `serve` propose a
/// PatchRequest on a review branch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RapidResponseSettings {
    /// `propose` (default: write a PatchRequest on a branch for review) or `off`.
    #[serde(default)]
    pub mode: ResponseMode,
    /// The least severity that qualifies (default `critical`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<MinSeverity>,
    /// An emergency MaintenanceWindow (`emergency: true`) the proposals name, used when
    /// their deadline comes before the hosts' next normal window (default: none, the
    /// hosts' baseline windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

impl RapidResponseSettings {
    /// The least qualifying severity.
    pub fn min_severity(&self) -> MinSeverity {
        self.min_severity.unwrap_or(MinSeverity::Critical)
    }
}

/// What rapid response does with a qualifying finding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ResponseMode {
    /// Propose a PatchRequest on a branch `patchkeeper/requests/<advisory>` (default).
    #[default]
    Propose,
    /// Do nothing beyond the usual alerts.
    Off,
}

/// Alerts: webhook targets and the conditions each wants, delivered at least once from a
/// persisted outbox (`docs/alerts.md`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NotificationSettings {
    /// Webhook targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
    /// The first retry of a failed delivery waits this long, each next one twice as long
    /// (duration, default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_initial: Option<String>,
    /// Retries never wait longer than this (duration, default `30m`); a delivery is retried
    /// until it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_max: Option<String>,
}

/// One webhook target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Webhook {
    /// The target's name (logs, metrics, the outbox).
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// Where alerts are POSTed: an `http` or `https` URL.
    #[schemars(regex(pattern = r"^https?://[^\x00-\x20\x7f]{1,2040}$"))]
    pub url: String,
    /// The conditions it wants (default: every one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<AlertEvent>,
    /// `json` (default: the generic JSON body) or `slack` (a Slack-compatible `text` body,
    /// for Slack, Mattermost or Rocket.Chat incoming webhooks).
    #[serde(default)]
    pub format: WebhookFormat,
    /// The environment variable holding the HMAC-SHA256 secret: each body is sent with
    /// `X-Patchkeeper-Signature: sha256=<hex HMAC of the body>`. A delivery whose variable is
    /// unset is not sent (and retried), never sent unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"))]
    pub secret_env: Option<String>,
    /// The least severity of a vulnerability that alerts: `critical` or `high` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<AlertSeverity>,
}

/// A webhook body's format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookFormat {
    /// The generic JSON alert.
    #[default]
    Json,
    /// `{"text": …}` for Slack-compatible incoming webhooks.
    Slack,
}

/// The vulnerability severities that may alert.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AlertSeverity {
    /// High and critical.
    High,
    /// Critical only.
    Critical,
}

/// A condition that alerts (once when it opens, once more when it clears).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AlertEvent {
    /// A critical or high vulnerability is open on a host.
    VulnerabilityOpened,
    /// An open critical or high vulnerability is past its deadline.
    VulnerabilityOverdue,
    /// A rollout was halted by its failure budget.
    RolloutHalted,
    /// A host failed or was rolled back.
    HostFailed,
    /// A host could not be reached.
    HostUnreachable,
    /// A host is non-compliant by the policy.
    HostNonCompliant,
    /// The desired commit does not validate.
    CommitInvalid,
    /// The reconcile loop's last round failed.
    ReconcileFailing,
    /// Rapid response proposed a patch request on a review branch (stands until it is
    /// merged or the branch is deleted).
    RequestProposed,
}

impl AlertEvent {
    /// Every condition.
    pub const ALL: [AlertEvent; 9] = [
        AlertEvent::VulnerabilityOpened,
        AlertEvent::VulnerabilityOverdue,
        AlertEvent::RolloutHalted,
        AlertEvent::HostFailed,
        AlertEvent::HostUnreachable,
        AlertEvent::HostNonCompliant,
        AlertEvent::CommitInvalid,
        AlertEvent::ReconcileFailing,
        AlertEvent::RequestProposed,
    ];

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::VulnerabilityOpened => "vulnerability-opened",
            AlertEvent::VulnerabilityOverdue => "vulnerability-overdue",
            AlertEvent::RolloutHalted => "rollout-halted",
            AlertEvent::HostFailed => "host-failed",
            AlertEvent::HostUnreachable => "host-unreachable",
            AlertEvent::HostNonCompliant => "host-non-compliant",
            AlertEvent::CommitInvalid => "commit-invalid",
            AlertEvent::ReconcileFailing => "reconcile-failing",
            AlertEvent::RequestProposed => "request-proposed",
        }
    }
}

/// Advisory data settings (`docs/vulnerabilities.md`). Where the store lives is the
/// operator's choice (`--store`, `PATCHKEEPER_ADVISORY_STORE`), not the fleet repo's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdvisorySettings {
    /// What `serve` re-imports (a Debian security tracker dump, OSV records, directories of
    /// them, OSV `all.zip` dumps): paths relative to the fleet repo and inside it (the
    /// `advisories/` directory is never read as fleet documents), or `https://` URLs
    /// (fetched conditionally, with a timeout and a size cap; plain `http://` is refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// How often `serve` checks `sources` for new data (duration, default `6h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    /// Advisory data older than this is reported stale by `vulns` and `plan` (duration,
    /// default `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// os-release `ID` to advisory ecosystem (`Debian`, `Ubuntu`, `AlmaLinux`, `Rocky
    /// Linux`) for OSes without a built-in one, e.g. `rhel: AlmaLinux`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ecosystems: BTreeMap<String, String>,
}

/// Report settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReportSettings {
    /// The branch report commits go to (default `patchkeeper/reports`): `/`-separated parts
    /// of letters, digits, `.`, `_` and `-`, each starting with a letter or digit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9][A-Za-z0-9._-]{0,99}){0,9}$"
    ))]
    pub branch: Option<String>,
    /// A remote to push reports to (default: none, local branch only): a remote name of the
    /// repository or a URL, without blanks or control characters; a local path must lie in
    /// the fleet repo or a directory the controller allows (`--allow-path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^\x00-\x20\x7f]{1,2048}$"))]
    pub remote: Option<String>,
    /// Commit author of report commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<Author>,
    /// The key that signs report commits, without control characters: an SSH private key
    /// path (relative to the fleet repo, inside it unless the controller allows another
    /// directory), or with `signingFormat: openpgp` a GnuPG key id or fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^\x00-\x1f\x7f]{1,4096}$"))]
    pub signing_key: Option<String>,
    /// How `signingKey` signs: `ssh` (default, `ssh-keygen -Y sign`) or `openpgp` (`gpg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_format: Option<SigningFormat>,
    /// An observation that changed no host's facts is committed only when the last report
    /// commit is older than this (duration, default `24h`), so the branch shows the
    /// controller alive without a commit per round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<String>,
}

/// The signature format of report commits (git's `gpg.format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SigningFormat {
    /// SSH signatures (`ssh-keygen -Y sign -n git`).
    #[default]
    Ssh,
    /// OpenPGP signatures made by GnuPG (`gpg -bsau KEY`).
    Openpgp,
}

/// A Git identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Author {
    /// A display name, without control characters or `<>`.
    #[schemars(regex(pattern = r"^[^\x00-\x1f\x7f<>]{1,256}$"))]
    pub name: String,
    /// An e-mail address, without blanks, control characters or `<>`.
    #[schemars(regex(pattern = r"^[^\x00-\x20\x7f<>]{1,256}$"))]
    pub email: String,
}

/// Reconciler settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReconcileSettings {
    /// How often to reconcile even without a new commit (duration, default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Apply automatically what windows allow (default false: plan and report only).
    #[serde(default)]
    pub auto_apply: bool,
}

/// What to do with a host key that is not in `known_hosts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Refuse unknown and changed keys (default).
    #[default]
    Strict,
    /// Record unknown keys; still refuse changed keys.
    AcceptNew,
}

/// SSH connection settings; every field optional so hosts can override a subset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SshSettings {
    /// A login user name (default `root`) of letters, digits, `.`, `_` and `-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$"))]
    pub user: Option<String>,
    /// TCP port (default 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// A private key file, without control characters (relative paths are relative to the
    /// fleet repo; it must lie inside it unless the controller allows another directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^\x00-\x1f\x7f]{1,4096}$"))]
    pub identity_file: Option<String>,
    /// Use the ssh-agent at `SSH_AUTH_SOCK` (default true when no identity file is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_agent: Option<bool>,
    /// A known_hosts file, without control characters (default `~/.ssh/known_hosts`;
    /// relative to the fleet repo, inside it unless the controller allows another directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^\x00-\x1f\x7f]{1,4096}$"))]
    pub known_hosts: Option<String>,
    /// Unknown host keys: `strict` (default) or `accept-new`. Changed keys are always refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_policy: Option<HostKeyPolicy>,
    /// Escalate with `sudo -n` (for non-root users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo: Option<bool>,
    /// Connect timeout (duration, default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// Timeout of one remote command (duration, default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_timeout: Option<String>,
    /// Keepalive interval (duration, default `15s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_interval: Option<String>,
    /// Key-exchange algorithm names of letters, digits and `@ . _ + -`, in preference order
    /// (default: curve25519-sha256 first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = r"^[A-Za-z0-9@._+-]{1,64}$")))]
    pub kex_algorithms: Option<Vec<String>>,
    /// Cipher names of letters, digits and `@ . _ + -`, in preference order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = r"^[A-Za-z0-9@._+-]{1,64}$")))]
    pub ciphers: Option<Vec<String>>,
    /// An OpenSSH client configuration file (`ssh_config(5)`: `Host`, `Match host`,
    /// `HostName`, `User`, `Port`, `IdentityFile`, `ProxyJump`, `ConnectTimeout`,
    /// `UserKnownHostsFile`, `StrictHostKeyChecking`, `Include`...) to look hosts up in, by
    /// their `address` (else their name), as `ssh ADDRESS` would; relative to the fleet repo,
    /// and it and every file it names must lie inside it unless the controller allows another
    /// directory. `none` reads no file. Default: the controller's `~/.ssh/config` and
    /// `/etc/ssh/ssh_config`. Values set here and in the inventory win over the file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^\x00-\x1f\x7f]{1,4096}$"))]
    pub config_file: Option<String>,
    /// Jump hosts, as OpenSSH's `ProxyJump`: `[user@]host[:port]` (or `ssh://…`),
    /// comma-separated, first to last; `none` connects directly. Each jump host is looked up
    /// by its name in the ssh_config file (address, user, key, known_hosts), then in
    /// Settings. Default: the ssh_config file's `ProxyJump`, else none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9@._:,/\[\]%-]{1,1024}$"))]
    pub proxy_jump: Option<String>,
}

/// Observation settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObserveSettings {
    /// Hosts observed at once (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub parallel: Option<u32>,
    /// Refresh package indexes (`apt-get update`, `dnf makecache`) before observing (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<bool>,
    /// Overall deadline for one host's observation (duration, default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_timeout: Option<String>,
}

/// Apply settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApplySettings {
    /// How long to wait for a held package-manager lock (duration, default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_wait: Option<String>,
    /// How long a package transaction (install, rollback, recovery repair) is waited for
    /// (duration, default `2h`). It is never signalled: past this, apply stops waiting,
    /// reports the host and leaves it in flight for the next run's recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_timeout: Option<String>,
    /// Minimum free disk space on `/var` before installing, in MiB (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free_disk_mib: Option<u64>,
    /// Ignored (kept so existing repos validate): the apply lock is an OS file lock that the
    /// kernel releases when its holder exits, so it is never stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_lock_after: Option<String>,
}

/// HTTP API settings: access is granted and revoked by reviewed commits to this file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiSettings {
    /// Bearer tokens accepted by the API (`patchkeeper token new` prints an entry). Only
    /// each token's SHA-256 is stored here, never the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<ApiToken>,
    /// Where a patch request posted to the API is committed: `branch` (default: a review
    /// branch `patchkeeper/requests/<name>`, merged like any change) or `direct` (onto the
    /// desired branch).
    #[serde(default)]
    pub requests: RequestMode,
}

/// One API token, as stored in the fleet repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiToken {
    /// Who holds the token: logged with each request and written as `Requested-By:`.
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// SHA-256 of the token, 64 lowercase hex digits.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// What the token may do: `read` (every GET), `request` (file patch requests; implies
    /// `read`), `admin` (trigger reconciles; implies both).
    #[schemars(length(min = 1))]
    pub scopes: Vec<Scope>,
    /// When the token stops being accepted (RFC 3339; default: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// What an API token may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Read fleet state, plans, runs, windows, requests and events.
    Read,
    /// File patch requests (and read).
    Request,
    /// Trigger reconciles (and everything else).
    Admin,
}

impl Scope {
    /// The name as written in Settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Request => "request",
            Scope::Admin => "admin",
        }
    }
}

/// Where patch requests made through the API are committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RequestMode {
    /// A new branch `patchkeeper/requests/<name>`, reviewed and merged like any change.
    #[default]
    Branch,
    /// Straight onto the desired branch.
    Direct,
}

// ---------------------------------------------------------------------------------------
// Inventory

/// `kind: Inventory` — hosts and the groups they belong to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InventorySpec {
    /// Groups hosts can be members of.
    #[serde(default)]
    pub groups: Vec<Group>,
    /// The hosts.
    #[serde(default)]
    pub hosts: Vec<Host>,
    /// More hosts and groups, read from an Ansible inventory when the fleet repo is loaded:
    /// its dynamic-inventory JSON (`ansible-inventory --list`, an inventory script's
    /// `--list`) or a static INI or YAML inventory, from a file or from a command's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ansible: Option<AnsibleSource>,
}

/// Where an Inventory's Ansible hosts come from: exactly one of `file` and `command`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AnsibleSource {
    /// A file, without control characters, relative to the fleet repo (inside it unless the
    /// controller allows another directory): JSON, INI or YAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^\x00-\x1f\x7f]{1,4096}$"))]
    pub file: Option<String>,
    /// A program and its arguments, run on the controller in the fleet repo (never through a
    /// shell; needs the controller's `--allow-local-commands`), whose standard output is the
    /// inventory, e.g. `[inventory/ec2.py, --list]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), inner(regex(pattern = r"^[^\x00]{1,4096}$")))]
    pub command: Option<Vec<String>>,
    /// How long the command may run (duration, default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Variables imported as host labels (for selectors), e.g. `[env, region]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// A named group of hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Group {
    /// A group name of lowercase letters, digits, `-`, `.` and `_` (unique in the fleet).
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$"))]
    pub name: String,
    /// What the group is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// How patchkeeper reaches a host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    /// Over SSH (default).
    #[default]
    Ssh,
    /// Commands run on the machine patchkeeper runs on.
    Local,
}

/// The package ecosystem a host is expected to use (checked against what is observed).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum PackageManager {
    /// Debian family: apt and dpkg.
    Apt,
    /// RHEL family: dnf and rpm.
    Dnf,
}

/// One host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Host {
    /// A host name of letters, digits, `-`, `.` and `_` (unique in the fleet).
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"))]
    pub name: String,
    /// An IP address or DNS name to connect to (default: the name) of letters, digits and
    /// `. - _ : %`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._:%-]{1,253}$"))]
    pub address: Option<String>,
    /// `ssh` (default) or `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<TransportKind>,
    /// Expected package manager; versions in baselines are checked against its ecosystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_manager: Option<PackageManager>,
    /// Groups this host belongs to (must be declared in an Inventory).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Labels baselines can select on.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Per-host SSH overrides of Settings' `ssh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSettings>,
}

// ---------------------------------------------------------------------------------------
// Selectors, baselines, requests

/// Picks hosts: a host matches when it is named in `hosts`, OR is a member of one of
/// `groups`; and (if `labels` is set) carries ALL the labels. An empty selector matches
/// every host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    /// Host names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Group names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Labels a host must all carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Which pending updates a baseline approves.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateClass {
    /// No pending updates beyond the named minimum versions (default).
    #[default]
    None,
    /// Pending updates from security origins.
    Security,
    /// Every pending update.
    All,
}

/// Approval of pending updates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdatePolicy {
    /// `security`, `all` or `none`.
    #[serde(default)]
    pub classes: UpdateClass,
    /// Only approve updates first seen at least this long ago (duration, e.g. `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Only approve security updates that fix an advisory at least this severe (from the
    /// imported advisory data, or dnf's updateinfo severity); others are left alone and
    /// listed. Unrated updates do not qualify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<MinSeverity>,
}

/// The least severity a baseline's security updates must fix.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum MinSeverity {
    /// Low and above.
    Low,
    /// Medium and above.
    Medium,
    /// High and above.
    High,
    /// Critical only.
    Critical,
}

impl MinSeverity {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            MinSeverity::Low => "low",
            MinSeverity::Medium => "medium",
            MinSeverity::High => "high",
            MinSeverity::Critical => "critical",
        }
    }
}

/// A package that must be installed at least at a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PackageRequirement {
    /// A package name as the host's package manager knows it: a letter, digit or `_`, then
    /// letters, digits and `. _ + -`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,255}$"))]
    pub name: String,
    /// A minimum version in the host's ecosystem syntax (Debian or RPM): a letter or digit,
    /// then letters, digits and `. _ + ~ ^ : -`; absent means "installed, any version".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._+~^:-]{0,255}$"))]
    pub min_version: Option<String>,
}

/// `kind: Baseline` — the desired patch state of the hosts its selector matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BaselineSpec {
    /// Which hosts this baseline applies to.
    pub selector: Selector,
    /// Required packages and minimum versions.
    #[serde(default)]
    pub packages: Vec<PackageRequirement>,
    /// Which pending updates to apply.
    #[serde(default)]
    pub updates: UpdatePolicy,
    /// Package names or glob patterns never touched, of letters, digits, `. _ + -` and
    /// `* ? [ ] !`.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^[A-Za-z0-9_*?\[][A-Za-z0-9._+*?\[\]!-]{0,255}$")))]
    pub hold: Vec<String>,
    /// Package names or glob patterns this baseline ignores, of letters, digits, `. _ + -`
    /// and `* ? [ ] !`.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^[A-Za-z0-9_*?\[][A-Za-z0-9._+*?\[\]!-]{0,255}$")))]
    pub exclude: Vec<String>,
    /// The MaintenanceWindow in which these hosts may be changed.
    pub window: String,
    /// The Rollout that orders the changes.
    pub rollout: String,
    /// Staged promotion: these hosts take only versions that the `from` hosts have run
    /// healthy for `soak` (proven by the reports branch; see `docs/promotion.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
}

/// Where a baseline's versions must come from: a version of a package becomes eligible for
/// the baseline's hosts once at least `minHosts` hosts of `from` (with the same package
/// manager) have had exactly that version installed for `soak`, and none of them failed a
/// health check, rolled back or went non-compliant because of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Promotion {
    /// The hosts whose reports prove a version (e.g. `{groups: [staging]}`); must not
    /// overlap the baseline's own selector.
    pub from: Selector,
    /// How long a version must have run on a `from` host (duration, e.g. `7d`).
    pub soak: String,
    /// On how many `from` hosts at least (default 1).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    #[schemars(range(min = 1))]
    pub min_hosts: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// `kind: PatchRequest` — an urgent one-off request, usually for a vulnerability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchRequestSpec {
    /// Which hosts the request is for.
    pub selector: Selector,
    /// Packages and the minimum versions that fix the issue.
    #[schemars(length(min = 1))]
    pub packages: Vec<PackageRequirement>,
    /// Why (e.g. a CVE id).
    pub reason: String,
    /// Who asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Advisory ids this request addresses (e.g. `CVE-2026-1234`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advisories: Vec<String>,
    /// When the fix must be in place (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// Window override (default: each host's baseline window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Rollout override (default: each host's baseline rollout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

/// `kind: VulnerabilityException` — an accepted risk: matching findings still show, but do
/// not count against advisory deadlines until the exception expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VulnerabilityExceptionSpec {
    /// Advisory ids or CVE ids it covers (`DSA-5800-1`, `CVE-2026-1234`).
    #[schemars(length(min = 1))]
    pub advisories: Vec<String>,
    /// Which hosts (default: every host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
    /// Only these packages (source or installed names; default: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// Who accepted the risk and answers for it.
    #[schemars(length(min = 1))]
    pub owner: String,
    /// Why the risk is accepted (compensating control, vendor statement...).
    #[schemars(length(min = 1))]
    pub reason: String,
    /// When it stops applying: an RFC 3339 time, or a date (`2026-12-31`: through the end of
    /// that day, UTC). `validate` warns 14 days before.
    pub expires: String,
}

// ---------------------------------------------------------------------------------------
// Windows

/// `kind: MaintenanceWindow` — when hosts may be changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MaintenanceWindowSpec {
    /// Always open (apart from freezes); excludes `schedule` and `duration`.
    #[serde(default)]
    pub always_open: bool,
    /// 5-field cron expression for when the window opens (e.g. `0 2 * * SUN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone the schedule and freezes are read in (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// How long the window stays open (duration, e.g. `4h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// No new batch starts in the last part of the window (duration, e.g. `30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutoff: Option<String>,
    /// Periods when the window stays closed.
    #[serde(default)]
    pub freezes: Vec<Freeze>,
    /// For patch requests only: a request whose deadline comes before its hosts' next
    /// normal window may name it (`docs/rapid-response.md`); no baseline may.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub emergency: bool,
}

/// A freeze: no change between `start` and `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Freeze {
    /// Name shown when the freeze blocks a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Start: a civil date-time in the window's zone (`2026-12-20T00:00`) or RFC 3339.
    pub start: String,
    /// End (exclusive), same syntax.
    pub end: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Rollouts

/// A count of hosts: an absolute number or a percentage string such as `"25%"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HostCount {
    /// An absolute number of hosts.
    Absolute(u32),
    /// A percentage of the hosts, written `"N%"`, at most `100%`.
    // The pattern allows any number so that validation, not the schema, refuses `150%`
    // with a message that says what is wrong.
    Percent(#[schemars(regex(pattern = r"^[0-9]+%$"))] String),
}

/// Reboot policy after a successful transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RebootPolicy {
    /// Never reboot; hosts that need one are reported pending-reboot.
    Never,
    /// Reboot when the host reports that it needs one (default).
    #[default]
    IfRequired,
    /// Always reboot after changing a host.
    Always,
}

/// What happens to a host whose transaction, verification or health check fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RollbackPolicy {
    /// Roll back to the recorded versions (default).
    #[default]
    Automatic,
    /// Leave the host as it is and mark it failed.
    Never,
}

/// `kind: Rollout` — how changes reach hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Ordered stages; the last stage takes every host not yet placed.
    #[schemars(length(min = 1))]
    pub stages: Vec<Stage>,
    /// Group ordering: a group's hosts go only after the listed groups' hosts.
    #[serde(default)]
    pub order: Vec<GroupOrder>,
    /// Hosts changed at once inside a batch (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub parallelism: Option<u32>,
    /// Failures tolerated before the rollout halts (absolute or percent; default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_budget: Option<HostCount>,
    /// Checks run on each host after its transaction.
    #[serde(default)]
    pub health_checks: Vec<Command>,
    /// Reboot policy (default `if-required`).
    #[serde(default)]
    pub reboot: RebootPolicy,
    /// How long to wait for a rebooted host to come back (duration, default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_timeout: Option<String>,
    /// Commands run on each host before its transaction.
    #[serde(default)]
    pub pre: Vec<Command>,
    /// Commands run on each host after a successful transaction.
    #[serde(default)]
    pub post: Vec<Command>,
    /// Rollback policy (default `automatic`).
    #[serde(default)]
    pub rollback: RollbackPolicy,
}

/// A rollout stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Stage {
    /// Stage name (e.g. `canary`).
    pub name: String,
    /// How many hosts: absolute or percent of the rollout's hosts.
    pub size: HostCount,
    /// Restrict the stage to hosts this selector matches (e.g. the canary group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
}

/// `group` goes only after every group in `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupOrder {
    /// The group that waits.
    pub group: String,
    /// Groups that go first.
    #[schemars(length(min = 1))]
    pub after: Vec<String>,
}

/// A command run on a host with a timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Command {
    /// Name shown in output.
    pub name: String,
    /// Shell command run on the host (`sh -c`).
    pub command: String,
    /// Timeout (duration, default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Attempts before the check counts as failed (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub retries: Option<u32>,
}

/// Settings document.
pub type Settings = Document<SettingsSpec>;
/// Inventory document.
pub type Inventory = Document<InventorySpec>;
/// Baseline document.
pub type Baseline = Document<BaselineSpec>;
/// MaintenanceWindow document.
pub type MaintenanceWindow = Document<MaintenanceWindowSpec>;
/// Rollout document.
pub type Rollout = Document<RolloutSpec>;
/// PatchRequest document.
pub type PatchRequest = Document<PatchRequestSpec>;
/// VulnerabilityException document.
pub type VulnerabilityException = Document<VulnerabilityExceptionSpec>;

/// When an exception's `expires` ends it: an RFC 3339 time as written, or the end of a
/// `YYYY-MM-DD` day (UTC). `None` when it does not parse.
pub fn exception_expiry(expires: &str) -> Option<jiff::Timestamp> {
    let s = expires.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t);
    }
    let date: jiff::civil::Date = s.parse().ok()?;
    date.tomorrow()
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

impl Selector {
    /// Whether the selector picks `host`: named in `hosts` or a member of one of `groups`
    /// (or both lists empty), and carrying every label in `labels`.
    pub fn matches(&self, host: &Host) -> bool {
        let by_name_or_group = (self.hosts.is_empty() && self.groups.is_empty())
            || self.hosts.contains(&host.name)
            || self.groups.iter().any(|g| host.groups.contains(g));
        by_name_or_group
            && self
                .labels
                .iter()
                .all(|(k, v)| host.labels.get(k) == Some(v))
    }
}

impl HostCount {
    /// The percentage of a `Percent` (`None` for an absolute count, or a number too large
    /// to read).
    pub fn percent(&self) -> Option<u64> {
        match self {
            HostCount::Absolute(_) => None,
            HostCount::Percent(p) => p.trim_end_matches('%').parse().ok(),
        }
    }

    /// The number of hosts out of `total` (percentages round up, so `10%` of 5 is 1).
    pub fn of(&self, total: usize) -> usize {
        match self {
            HostCount::Absolute(n) => usize::try_from(*n).unwrap_or(usize::MAX),
            HostCount::Percent(p) => {
                let pct: usize = p.trim_end_matches('%').parse().unwrap_or(0);
                (total * pct).div_ceil(100)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, groups: &[&str], labels: &[(&str, &str)]) -> Host {
        Host {
            name: name.into(),
            address: None,
            transport: None,
            package_manager: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ssh: None,
        }
    }

    #[test]
    fn selector_semantics() {
        let web = host("web-1", &["web"], &[("env", "prod")]);
        let db = host("db-1", &["db"], &[("env", "staging")]);
        let all = Selector::default();
        assert!(all.matches(&web) && all.matches(&db));
        let groups = Selector {
            groups: vec!["web".into()],
            ..Default::default()
        };
        assert!(groups.matches(&web) && !groups.matches(&db));
        let named_or_group = Selector {
            hosts: vec!["db-1".into()],
            groups: vec!["web".into()],
            ..Default::default()
        };
        assert!(named_or_group.matches(&web) && named_or_group.matches(&db));
        let labelled = Selector {
            labels: [("env".to_string(), "prod".to_string())].into(),
            ..Default::default()
        };
        assert!(labelled.matches(&web) && !labelled.matches(&db));
    }

    #[test]
    fn host_counts_round_up() {
        assert_eq!(HostCount::Percent("25%".into()).of(10), 3);
        assert_eq!(HostCount::Percent("10%".into()).of(5), 1);
        assert_eq!(HostCount::Percent("100%".into()).of(7), 7);
        assert_eq!(HostCount::Percent("0%".into()).of(7), 0);
        assert_eq!(HostCount::Absolute(3).of(2), 3);
    }
}
