//! OpenSSH client configuration (`ssh_config(5)`): the files (`~/.ssh/config`, the system
//! `/etc/ssh/ssh_config`, or the fleet repo's `ssh.configFile`) read the way `ssh` reads them,
//! so that `Host` blocks, `Match host`, `Include` and first-value-wins give the same answer
//! `ssh -G` gives (the tests compare with the real `ssh -G`).
//!
//! Loading ([`load`]) reads a file and the files its `Include`s name (globs, `~`, relative
//! paths under `~/.ssh` or `/etc/ssh` as OpenSSH does), asking a caller's check before reading
//! each one (the fleet repo's configuration may only name files where the controller allows).
//! Evaluation ([`resolve`]) is pure: for a destination, the values that apply, each with the
//! file and line it came from.
//!
//! Supported keywords: `Host`, `Match` (`all`, `host`, `originalhost`, `user`, `localuser`,
//! negated with `!`), `Include`, `HostName` (with `%h`), `User`, `Port`, `IdentityFile`,
//! `CertificateFile`, `IdentitiesOnly`, `IdentityAgent none`, `ProxyJump`, `ConnectTimeout`,
//! `ServerAliveInterval`, `UserKnownHostsFile`, `GlobalKnownHostsFile`,
//! `StrictHostKeyChecking`, `HostKeyAlias`, `IgnoreUnknown`. Every other OpenSSH keyword
//! is accepted and ignored (forwardings, multiplexing, GSSAPI...), except those that would
//! change where or how patchkeeper connects, which make the host fail with a clear message
//! rather than connect differently from `ssh`: `ProxyCommand`, `Match exec`/`canonical`/
//! `final`/`localnetwork`/`tagged`, and `CanonicalizeHostname yes`. An unknown keyword is an
//! error, as in OpenSSH.

use std::path::{Path, PathBuf};

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A value with the place it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valued<T> {
    /// The value as written (tokens and `~` not yet expanded).
    pub value: T,
    /// Where.
    pub origin: Origin,
}

/// Errors reading or evaluating an ssh_config file. Messages name the file and line.
#[derive(Debug, thiserror::Error)]
pub enum SshConfigError {
    /// A file could not be read.
    #[error("ssh_config `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line does not parse (what OpenSSH calls a bad configuration option).
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The configuration asks for something patchkeeper does not do; connecting anyway
    /// would differ from what `ssh` does.
    #[error("{origin}: {what} is not supported by patchkeeper{hint}")]
    Unsupported {
        /// Where.
        origin: Origin,
        /// The keyword or criterion.
        what: String,
        /// What to do instead (starts with `; `), or empty.
        hint: String,
    },
    /// The caller's check refused a file (outside the directories the controller allows).
    #[error("{message}")]
    Refused {
        /// The check's message.
        message: String,
    },
    /// `Include` nested deeper than OpenSSH allows (16).
    #[error("ssh_config `{}`: Include nested too deeply (a cycle?)", path.display())]
    TooDeep {
        /// The file that would be read.
        path: PathBuf,
    },
}

/// One loaded file with its includes.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    /// The file.
    pub path: PathBuf,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    line: usize,
    kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq)]
enum EntryKind {
    Host(Vec<String>),
    Match(Vec<Criterion>),
    Include(Vec<ConfigFile>),
    Set(Setting),
    /// A keyword that changes how `ssh` connects and that patchkeeper cannot honour.
    Unsupported {
        what: String,
        hint: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Criterion {
    negated: bool,
    kind: CriterionKind,
}

#[derive(Debug, Clone, PartialEq)]
enum CriterionKind {
    All,
    Host(String),
    OriginalHost(String),
    User(String),
    LocalUser(String),
    Unsupported(String),
}

/// `StrictHostKeyChecking`, as `ssh -G` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// `yes`: refuse unknown keys.
    Yes,
    /// `no`/`off`: OpenSSH accepts unknown keys (and some changed ones); patchkeeper records
    /// unknown keys and always refuses changed ones.
    No,
    /// `accept-new`: record unknown keys, refuse changed ones.
    AcceptNew,
    /// `ask`: there is nobody to ask, so patchkeeper refuses unknown keys.
    Ask,
}

#[derive(Debug, Clone, PartialEq)]
enum Setting {
    HostName(String),
    User(String),
    Port(u16),
    IdentityFile(String),
    CertificateFile(String),
    IdentitiesOnly(bool),
    IdentityAgent(String),
    ProxyJump(String),
    ProxyCommand(String),
    ConnectTimeout(Option<u64>),
    ServerAliveInterval(u64),
    UserKnownHostsFile(Vec<String>),
    GlobalKnownHostsFile(Vec<String>),
    StrictHostKeyChecking(StrictHostKeyChecking),
    HostKeyAlias(String),
    CanonicalizeHostname(bool),
}

/// What the configuration says for one destination; `None` where it says nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// `HostName`, `%h` expanded (the address to connect to).
    pub hostname: Option<Valued<String>>,
    /// `User`.
    pub user: Option<Valued<String>>,
    /// `Port`.
    pub port: Option<Valued<u16>>,
    /// Every `IdentityFile`, in order (tokens and `~` unexpanded).
    pub identity_files: Vec<Valued<String>>,
    /// Every `CertificateFile`, in order.
    pub certificate_files: Vec<Valued<String>>,
    /// `IdentitiesOnly`.
    pub identities_only: Option<Valued<bool>>,
    /// `IdentityAgent` (only `none` is acted upon: no agent).
    pub identity_agent: Option<Valued<String>>,
    /// `ProxyJump` as written (`none` included).
    pub proxy_jump: Option<Valued<String>>,
    /// `ProxyCommand` (not supported: the caller refuses the host).
    pub proxy_command: Option<Valued<String>>,
    /// `ConnectTimeout` in seconds (`Some(None)`: `none`; 0 also means no timeout).
    pub connect_timeout: Option<Valued<Option<u64>>>,
    /// `ServerAliveInterval` in seconds.
    pub server_alive_interval: Option<Valued<u64>>,
    /// `UserKnownHostsFile` (one line, several files).
    pub user_known_hosts_files: Option<Valued<Vec<String>>>,
    /// `GlobalKnownHostsFile`.
    pub global_known_hosts_files: Option<Valued<Vec<String>>>,
    /// `StrictHostKeyChecking`.
    pub strict_host_key_checking: Option<Valued<StrictHostKeyChecking>>,
    /// `HostKeyAlias`.
    pub host_key_alias: Option<Valued<String>>,
}

/// How to read a configuration.
pub struct LoadOptions<'a> {
    /// The home directory (`~`, and relative `Include` paths of user configurations).
    pub home: &'a Path,
    /// A user configuration (relative includes under `~/.ssh`) rather than the system one
    /// (`/etc/ssh`).
    pub user_config: bool,
    /// Asked before any file is read; an `Err` message refuses it.
    pub check: &'a dyn Fn(&Path) -> Result<(), String>,
}

/// OpenSSH's limit on nested includes (`READCONF_MAX_DEPTH`).
const MAX_DEPTH: usize = 16;

/// Reads `path` and everything it includes.
pub fn load(path: &Path, options: &LoadOptions<'_>) -> Result<ConfigFile, SshConfigError> {
    load_depth(path, options, 0)
}

fn load_depth(
    path: &Path,
    options: &LoadOptions<'_>,
    depth: usize,
) -> Result<ConfigFile, SshConfigError> {
    if depth > MAX_DEPTH {
        return Err(SshConfigError::TooDeep {
            path: path.to_path_buf(),
        });
    }
    (options.check)(path).map_err(|message| SshConfigError::Refused { message })?;
    let text = std::fs::read_to_string(path).map_err(|source| SshConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let raw = parse(&text, path)?;
    let mut entries = Vec::with_capacity(raw.len());
    for entry in raw {
        match entry {
            RawEntry::Entry(e) => entries.push(e),
            RawEntry::Include { line, patterns } => {
                let mut files = Vec::new();
                for pattern in patterns {
                    for file in include_paths(&pattern, options) {
                        files.push(load_depth(&file, options, depth + 1)?);
                    }
                }
                entries.push(Entry {
                    line,
                    kind: EntryKind::Include(files),
                });
            }
        }
    }
    Ok(ConfigFile {
        path: path.to_path_buf(),
        entries,
    })
}

/// Parses a configuration held in memory (its `Include`s are not followed; for tests and
/// files whose includes the caller handles).
pub fn parse_str(text: &str, path: &Path) -> Result<ConfigFile, SshConfigError> {
    let entries = parse(text, path)?
        .into_iter()
        .filter_map(|e| match e {
            RawEntry::Entry(e) => Some(e),
            RawEntry::Include { .. } => None,
        })
        .collect();
    Ok(ConfigFile {
        path: path.to_path_buf(),
        entries,
    })
}

/// The files an `Include` argument names: `~` expanded, a relative path anchored in
/// `~/.ssh` (user configuration) or `/etc/ssh`, glob characters in any component expanded
/// and sorted; a pattern that names nothing is skipped, as `ssh` skips it.
fn include_paths(pattern: &str, options: &LoadOptions<'_>) -> Vec<PathBuf> {
    let anchored = if let Some(rest) = pattern.strip_prefix("~/") {
        options.home.join(rest)
    } else if pattern == "~" {
        options.home.to_path_buf()
    } else if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else if options.user_config {
        options.home.join(".ssh").join(pattern)
    } else {
        Path::new("/etc/ssh").join(pattern)
    };
    expand_glob(&anchored)
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn expand_glob(path: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for component in path.components() {
        let text = component.as_os_str().to_string_lossy();
        if !has_glob(&text) {
            for p in &mut found {
                p.push(component.as_os_str());
            }
            continue;
        }
        let Ok(glob) = globset::GlobBuilder::new(&text)
            .literal_separator(true)
            .build()
            .map(|g| g.compile_matcher())
        else {
            return Vec::new();
        };
        let mut next = Vec::new();
        for dir in &found {
            let Ok(read) = std::fs::read_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) else {
                continue;
            };
            let mut names: Vec<String> = read
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                // glob(3) without GLOB_PERIOD: a leading dot must be matched literally.
                .filter(|n| !n.starts_with('.') || text.starts_with('.'))
                .filter(|n| glob.is_match(n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    found.into_iter().filter(|p| p.is_file()).collect()
}

enum RawEntry {
    Entry(Entry),
    Include { line: usize, patterns: Vec<String> },
}

fn parse(text: &str, path: &Path) -> Result<Vec<RawEntry>, SshConfigError> {
    let mut out = Vec::new();
    let mut ignore_unknown: Vec<String> = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = index + 1;
        let err = |message: String| SshConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            message,
        };
        let Some((keyword, args, rest)) = split_line(raw_line).map_err(err)? else {
            continue;
        };
        let lower = keyword.to_ascii_lowercase();
        let one = |args: &[String]| -> Result<String, SshConfigError> {
            match args {
                [] => Err(err(format!("keyword {lower}: missing argument"))),
                [a] => Ok(a.clone()),
                _ => Err(err(format!(
                    "keyword {lower} extra arguments at end of line"
                ))),
            }
        };
        let yes_no = |args: &[String]| -> Result<bool, SshConfigError> {
            match one(args)?.to_ascii_lowercase().as_str() {
                "yes" | "true" => Ok(true),
                "no" | "false" => Ok(false),
                other => Err(err(format!(
                    "keyword {lower}: expected yes or no, got `{other}`"
                ))),
            }
        };
        let set = |s: Setting| {
            RawEntry::Entry(Entry {
                line,
                kind: EntryKind::Set(s),
            })
        };
        let entry = match lower.as_str() {
            "host" => {
                if args.is_empty() {
                    return Err(err("Host: missing pattern".into()));
                }
                RawEntry::Entry(Entry {
                    line,
                    kind: EntryKind::Host(args),
                })
            }
            "match" => RawEntry::Entry(Entry {
                line,
                kind: EntryKind::Match(parse_match(&args).map_err(err)?),
            }),
            "include" => {
                if args.is_empty() {
                    return Err(err("Include: missing path".into()));
                }
                RawEntry::Include {
                    line,
                    patterns: args,
                }
            }
            "hostname" => set(Setting::HostName(one(&args)?)),
            "user" => set(Setting::User(one(&args)?)),
            "port" => {
                let v = one(&args)?;
                match v.parse::<u16>().ok().or_else(|| service_port(&v)) {
                    Some(p) if p > 0 => set(Setting::Port(p)),
                    _ => return Err(err(format!("Badly formatted port number `{v}`"))),
                }
            }
            "identityfile" => set(Setting::IdentityFile(one(&args)?)),
            "certificatefile" => set(Setting::CertificateFile(one(&args)?)),
            "identitiesonly" => set(Setting::IdentitiesOnly(yes_no(&args)?)),
            "identityagent" => set(Setting::IdentityAgent(one(&args)?)),
            "proxyjump" => set(Setting::ProxyJump(one(&args)?)),
            // The rest of the line, as ssh takes it.
            "proxycommand" => set(Setting::ProxyCommand(rest.trim().to_owned())),
            "connecttimeout" => {
                let v = one(&args)?;
                match parse_seconds(&v) {
                    Some(s) => set(Setting::ConnectTimeout(Some(s))),
                    None if v.eq_ignore_ascii_case("none") => set(Setting::ConnectTimeout(None)),
                    None => return Err(err(format!("invalid time value `{v}`"))),
                }
            }
            "serveraliveinterval" => {
                let v = one(&args)?;
                match parse_seconds(&v) {
                    Some(s) => set(Setting::ServerAliveInterval(s)),
                    None => return Err(err(format!("invalid time value `{v}`"))),
                }
            }
            "userknownhostsfile" | "globalknownhostsfile" => {
                if args.is_empty() {
                    return Err(err(format!("keyword {lower}: missing argument")));
                }
                if lower == "userknownhostsfile" {
                    set(Setting::UserKnownHostsFile(args))
                } else {
                    set(Setting::GlobalKnownHostsFile(args))
                }
            }
            "stricthostkeychecking" => {
                let v = one(&args)?.to_ascii_lowercase();
                set(Setting::StrictHostKeyChecking(match v.as_str() {
                    "yes" | "true" => StrictHostKeyChecking::Yes,
                    "no" | "false" | "off" => StrictHostKeyChecking::No,
                    "accept-new" => StrictHostKeyChecking::AcceptNew,
                    "ask" => StrictHostKeyChecking::Ask,
                    other => {
                        return Err(err(format!(
                        "StrictHostKeyChecking: expected yes, no, accept-new or ask, got `{other}`"
                    )))
                    }
                }))
            }
            "hostkeyalias" => set(Setting::HostKeyAlias(one(&args)?)),
            "canonicalizehostname" => {
                let v = one(&args)?.to_ascii_lowercase();
                set(Setting::CanonicalizeHostname(matches!(
                    v.as_str(),
                    "yes" | "always" | "true"
                )))
            }
            "ignoreunknown" => {
                ignore_unknown.extend(args.iter().flat_map(|a| a.split(',')).map(str::to_owned));
                continue;
            }
            "knownhostscommand" => RawEntry::Entry(Entry {
                line,
                kind: EntryKind::Unsupported {
                    what: "KnownHostsCommand".into(),
                    hint: "; list the keys in a UserKnownHostsFile",
                },
            }),
            k if IGNORED_KEYWORDS.contains(&k) => continue,
            _ if ignore_unknown
                .iter()
                .any(|p| wildcard_match(&p.to_ascii_lowercase(), &lower)) =>
            {
                continue
            }
            _ => return Err(err(format!("Bad configuration option: {lower}"))),
        };
        out.push(entry);
    }
    Ok(out)
}

/// A TCP service name's port from `/etc/services` (`Port ssh`, as `getservbyname`).
fn service_port(name: &str) -> Option<u16> {
    let services = std::fs::read_to_string("/etc/services").ok()?;
    services.lines().find_map(|line| {
        let line = line.split('#').next()?;
        let mut fields = line.split_whitespace();
        let service = fields.next()?;
        let (port, proto) = fields.next()?.split_once('/')?;
        let aliases: Vec<&str> = fields.collect();
        (proto == "tcp" && (service == name || aliases.contains(&name)))
            .then(|| port.parse().ok())
            .flatten()
    })
}

/// Seconds, as OpenSSH's `convtime`: `30`, `30s`, `5m`, `1h`, `1h30m`.
fn parse_seconds(v: &str) -> Option<u64> {
    if let Ok(n) = v.parse::<u64>() {
        return Some(n);
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in v.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604800,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !digits.is_empty() {
        total = total.checked_add(digits.parse().ok()?)?;
    }
    Some(total)
}

fn parse_match(args: &[String]) -> Result<Vec<Criterion>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    if args.is_empty() {
        return Err("Match: missing criteria".into());
    }
    while i < args.len() {
        let word = &args[i];
        let (negated, name) = match word.strip_prefix('!') {
            Some(n) => (true, n.to_ascii_lowercase()),
            None => (false, word.to_ascii_lowercase()),
        };
        i += 1;
        let kind = match name.as_str() {
            "all" => CriterionKind::All,
            "canonical" | "final" => CriterionKind::Unsupported(format!("Match {name}")),
            "host" | "originalhost" | "user" | "localuser" | "exec" | "localnetwork" | "tagged"
            | "version" | "command" => {
                let Some(arg) = args.get(i) else {
                    return Err(format!("Match {name}: missing argument"));
                };
                i += 1;
                match name.as_str() {
                    "host" => CriterionKind::Host(arg.clone()),
                    "originalhost" => CriterionKind::OriginalHost(arg.clone()),
                    "user" => CriterionKind::User(arg.clone()),
                    "localuser" => CriterionKind::LocalUser(arg.clone()),
                    _ => CriterionKind::Unsupported(format!("Match {name}")),
                }
            }
            other => return Err(format!("Match: unsupported attribute `{other}`")),
        };
        out.push(Criterion { negated, kind });
    }
    if out.iter().any(|c| c.kind == CriterionKind::All)
        && out
            .iter()
            .any(|c| !matches!(c.kind, CriterionKind::All | CriterionKind::Unsupported(_)))
    {
        return Err("Match all: cannot be combined with other criteria".into());
    }
    Ok(out)
}

/// Splits one line into its keyword, its arguments (quotes and backslashes as OpenSSH's
/// `argv_split`, stopping at an unquoted `#` word) and the raw text after the keyword.
/// `None` for blank and comment lines.
fn split_line(line: &str) -> Result<Option<(String, Vec<String>, String)>, String> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let words = argv_split(trimmed)?;
    let Some(first) = words.first() else {
        return Ok(None);
    };
    let mut args: Vec<String> = words[1..].to_vec();
    // `Keyword=value`, `Keyword = value`, `Keyword =value`.
    let keyword = match first.split_once('=') {
        Some((k, v)) => {
            if !v.is_empty() {
                args.insert(0, v.to_owned());
            }
            k.to_owned()
        }
        None => {
            if let Some(next) = args.first_mut() {
                if let Some(v) = next.strip_prefix('=') {
                    if v.is_empty() {
                        args.remove(0);
                    } else {
                        *next = v.to_owned();
                    }
                }
            }
            first.clone()
        }
    };
    // The raw rest (for ProxyCommand): after the keyword and an optional `=`.
    let after = trimmed
        .trim_start_matches(|c: char| !c.is_whitespace() && c != '=')
        .trim_start();
    let rest = after.strip_prefix('=').unwrap_or(after).to_owned();
    Ok(Some((keyword, args, rest)))
}

fn argv_split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else {
            break;
        };
        if c == '#' {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match quote {
                None if c.is_whitespace() => break,
                None if c == '"' || c == '\'' => {
                    quote = Some(c);
                    chars.next();
                }
                Some(q) if c == q => {
                    quote = None;
                    chars.next();
                }
                _ if c == '\\' => {
                    chars.next();
                    match chars.peek() {
                        Some(&n) if n == '\\' || n == '"' || n == '\'' || n == ' ' => {
                            word.push(n);
                            chars.next();
                        }
                        _ => word.push('\\'),
                    }
                }
                _ => {
                    word.push(c);
                    chars.next();
                }
            }
        }
        if quote.is_some() {
            return Err("unterminated quoted argument".into());
        }
        out.push(word);
    }
    Ok(out)
}

/// Local facts evaluation needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// The local user name (`Match localuser`, and `Match user` while no `User` is set).
    pub local_user: String,
}

impl Context {
    /// This process's user (`$USER`, else `/etc/passwd` by uid).
    pub fn current() -> Context {
        Context {
            local_user: current_user(),
        }
    }
}

fn current_user() -> String {
    if let Ok(u) = std::env::var("USER") {
        if !u.is_empty() {
            return u;
        }
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        });
    if let (Some(uid), Ok(passwd)) = (uid, std::fs::read_to_string("/etc/passwd")) {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 2 && f[2] == uid {
                return f[0].to_owned();
            }
        }
    }
    "root".to_owned()
}

/// What `files` (read in order, as `ssh` reads `-F` or user then system files) say for
/// the destination `host` (the name given to `ssh`).
pub fn resolve(
    files: &[ConfigFile],
    host: &str,
    context: &Context,
) -> Result<Resolved, SshConfigError> {
    let mut out = Resolved::default();
    for file in files {
        let mut active = true;
        eval_file(file, host, context, &mut active, &mut out)?;
    }
    Ok(out)
}

fn eval_file(
    file: &ConfigFile,
    host: &str,
    context: &Context,
    active: &mut bool,
    out: &mut Resolved,
) -> Result<(), SshConfigError> {
    let origin = |line| Origin {
        file: file.path.clone(),
        line,
    };
    for entry in &file.entries {
        match &entry.kind {
            EntryKind::Host(patterns) => *active = host_matches(patterns, host),
            EntryKind::Match(criteria) => {
                *active = match_matches(criteria, host, context, out, &origin(entry.line))?;
            }
            EntryKind::Include(files) => {
                if *active {
                    for f in files {
                        let before = *active;
                        eval_file(f, host, context, active, out)?;
                        // A Host or Match inside an include does not change the including
                        // file's state (readconf.c restores it).
                        *active = before;
                    }
                }
            }
            EntryKind::Unsupported { what, hint } => {
                if *active {
                    return Err(SshConfigError::Unsupported {
                        origin: origin(entry.line),
                        what: what.clone(),
                        hint: (*hint).to_owned(),
                    });
                }
            }
            EntryKind::Set(setting) if *active => apply(out, setting, origin(entry.line), host)?,
            EntryKind::Set(_) => {}
        }
    }
    Ok(())
}

fn first<T: Clone>(slot: &mut Option<Valued<T>>, value: T, origin: Origin) {
    if slot.is_none() {
        *slot = Some(Valued { value, origin });
    }
}

fn apply(
    out: &mut Resolved,
    setting: &Setting,
    origin: Origin,
    host: &str,
) -> Result<(), SshConfigError> {
    match setting {
        Setting::HostName(h) => {
            let expanded = expand_hostname(h, host).map_err(|message| SshConfigError::Syntax {
                path: origin.file.clone(),
                line: origin.line,
                message,
            })?;
            first(&mut out.hostname, expanded, origin)
        }
        Setting::User(u) => first(&mut out.user, u.clone(), origin),
        Setting::Port(p) => first(&mut out.port, *p, origin),
        // Repeated files are offered once (readconf.c add_identity_file).
        Setting::IdentityFile(f) => {
            if !out.identity_files.iter().any(|v| v.value == *f) {
                out.identity_files.push(Valued {
                    value: f.clone(),
                    origin,
                })
            }
        }
        Setting::CertificateFile(f) => {
            if !out.certificate_files.iter().any(|v| v.value == *f) {
                out.certificate_files.push(Valued {
                    value: f.clone(),
                    origin,
                })
            }
        }
        Setting::IdentitiesOnly(b) => first(&mut out.identities_only, *b, origin),
        Setting::IdentityAgent(a) => first(&mut out.identity_agent, a.clone(), origin),
        // ProxyJump and ProxyCommand compete: whichever comes first wins (ssh_config(5)).
        Setting::ProxyJump(j) => {
            if out.proxy_command.is_none() {
                first(&mut out.proxy_jump, j.clone(), origin)
            }
        }
        Setting::ProxyCommand(c) => {
            if out.proxy_jump.is_none() {
                first(&mut out.proxy_command, c.clone(), origin)
            }
        }
        Setting::ConnectTimeout(t) => first(&mut out.connect_timeout, *t, origin),
        Setting::ServerAliveInterval(s) => first(&mut out.server_alive_interval, *s, origin),
        Setting::UserKnownHostsFile(f) => first(&mut out.user_known_hosts_files, f.clone(), origin),
        Setting::GlobalKnownHostsFile(f) => {
            first(&mut out.global_known_hosts_files, f.clone(), origin)
        }
        Setting::StrictHostKeyChecking(s) => first(&mut out.strict_host_key_checking, *s, origin),
        Setting::HostKeyAlias(a) => first(&mut out.host_key_alias, a.clone(), origin),
        Setting::CanonicalizeHostname(true) => {
            return Err(SshConfigError::Unsupported {
                origin,
                what: "CanonicalizeHostname".into(),
                hint: "; write the full names in HostName".into(),
            })
        }
        Setting::CanonicalizeHostname(false) => {}
    }
    Ok(())
}

/// `HostName` with `%h` (the name given) and `%%`.
fn expand_hostname(value: &str, host: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(host),
            Some('%') => out.push('%'),
            Some(t) => return Err(format!("HostName: token %{t} is not supported (only %h)")),
            None => return Err("HostName: `%` at end of value".into()),
        }
    }
    Ok(out)
}

fn host_matches(patterns: &[String], host: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        if let Some(negated) = p.strip_prefix('!') {
            if wildcard_match(negated, host) {
                return false;
            }
        } else if wildcard_match(p, host) {
            matched = true;
        }
    }
    matched
}

/// OpenSSH's `match_pattern_list`: comma-separated patterns, `!` negates (a negated match
/// decides "no").
fn pattern_list_matches(list: &str, name: &str) -> bool {
    let mut matched = false;
    for p in list.split(',') {
        if let Some(negated) = p.strip_prefix('!') {
            if wildcard_match(negated, name) {
                return false;
            }
        } else if wildcard_match(p, name) {
            matched = true;
        }
    }
    matched
}

fn match_matches(
    criteria: &[Criterion],
    host: &str,
    context: &Context,
    so_far: &Resolved,
    origin: &Origin,
) -> Result<bool, SshConfigError> {
    let mut result = true;
    for c in criteria {
        let hit = match &c.kind {
            CriterionKind::All => true,
            // `host` is the name after HostName as set so far (readconf.c match_cfg_line).
            CriterionKind::Host(list) => {
                let name = so_far
                    .hostname
                    .as_ref()
                    .map(|h| h.value.as_str())
                    .unwrap_or(host);
                pattern_list_matches(list, name)
            }
            CriterionKind::OriginalHost(list) => pattern_list_matches(list, host),
            CriterionKind::User(list) => {
                let user = so_far
                    .user
                    .as_ref()
                    .map(|u| u.value.as_str())
                    .unwrap_or(&context.local_user);
                pattern_list_matches(list, user)
            }
            CriterionKind::LocalUser(list) => pattern_list_matches(list, &context.local_user),
            CriterionKind::Unsupported(what) => {
                return Err(SshConfigError::Unsupported {
                    origin: origin.clone(),
                    what: what.clone(),
                    hint: "; use Host or Match host".into(),
                })
            }
        };
        if hit == c.negated {
            result = false;
        }
    }
    Ok(result)
}

/// `*` and `?` globbing, case-sensitive as OpenSSH's `match_pattern` (known_hosts lowercases
/// both sides first).
pub(crate) fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Values for the `%` tokens of path options (`IdentityFile`, `CertificateFile`,
/// `UserKnownHostsFile`).
#[derive(Debug, Clone)]
pub struct Tokens<'a> {
    /// `%d` and `~`: the local home directory.
    pub home: &'a Path,
    /// `%u`: the local user.
    pub local_user: &'a str,
    /// `%h`: the remote host name (after HostName).
    pub hostname: &'a str,
    /// `%n`: the name as given.
    pub original_host: &'a str,
    /// `%r`: the remote user.
    pub remote_user: &'a str,
    /// `%p`: the port.
    pub port: u16,
}

/// Expands `~/` and the `%` tokens `%d %u %h %n %r %p %%` of a path option.
pub fn expand_path(value: &str, tokens: &Tokens<'_>) -> Result<PathBuf, String> {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&tokens.home.to_string_lossy()),
            Some('u') => out.push_str(tokens.local_user),
            Some('h') => out.push_str(tokens.hostname),
            Some('n') => out.push_str(tokens.original_host),
            Some('r') => out.push_str(tokens.remote_user),
            Some('p') => out.push_str(&tokens.port.to_string()),
            Some('%') => out.push('%'),
            Some(t) => {
                return Err(format!(
                    "token %{t} in `{value}` is not supported (use %d %u %h %n %r %p)"
                ))
            }
            None => return Err(format!("`%` at the end of `{value}`")),
        }
    }
    Ok(if out == "~" {
        tokens.home.to_path_buf()
    } else if let Some(rest) = out.strip_prefix("~/") {
        tokens.home.join(rest)
    } else if out.starts_with('~') {
        return Err(format!(
            "`{value}`: only `~/` (this user's home) is supported"
        ));
    } else {
        PathBuf::from(out)
    })
}

/// One hop of a `ProxyJump` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpSpec {
    /// `user@` when given.
    pub user: Option<String>,
    /// The host (a name looked up in the configuration again, or an address).
    pub host: String,
    /// `:port` when given.
    pub port: Option<u16>,
}

impl std::fmt::Display for JumpSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Parses a `ProxyJump` value: `none` (no jump: empty list), or comma-separated
/// `[user@]host[:port]` or `ssh://[user@]host[:port]`; IPv6 hosts in brackets.
pub fn parse_proxy_jump(value: &str) -> Result<Vec<JumpSpec>, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|hop| {
            let hop = hop.trim();
            let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
            if hop.is_empty() {
                return Err(format!("ProxyJump `{value}`: empty hop"));
            }
            let (user, rest) = match hop.rsplit_once('@') {
                Some((u, r)) if !u.is_empty() => (Some(u.to_owned()), r),
                Some(_) => return Err(format!("ProxyJump `{value}`: empty user in `{hop}`")),
                None => (None, hop),
            };
            let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
                let (h, after) = inner
                    .split_once(']')
                    .ok_or_else(|| format!("ProxyJump `{value}`: unclosed `[` in `{hop}`"))?;
                (h, after.strip_prefix(':'))
            } else {
                match rest.rsplit_once(':') {
                    Some((h, p)) if !h.contains(':') => (h, Some(p)),
                    _ => (rest, None),
                }
            };
            let port = match port {
                Some(p) => Some(
                    p.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("ProxyJump `{value}`: bad port `{p}`"))?,
                ),
                None => None,
            };
            if host.is_empty() || host.contains(char::is_whitespace) {
                return Err(format!("ProxyJump `{value}`: bad host in `{hop}`"));
            }
            Ok(JumpSpec {
                user,
                host: host.to_owned(),
                port,
            })
        })
        .collect()
}

/// Every other keyword OpenSSH 9 accepts (readconf.c), lowercase: accepted and ignored,
/// because it does not change where patchkeeper connects or how it authenticates.
const IGNORED_KEYWORDS: &[&str] = &[
    "addkeystoagent",
    "addressfamily",
    "afstokenpassing",
    "batchmode",
    "bindaddress",
    "bindinterface",
    "canonicaldomains",
    "canonicalizefallbacklocal",
    "canonicalizemaxdots",
    "canonicalizepermittedcnames",
    "casignaturealgorithms",
    "challengeresponseauthentication",
    "channeltimeout",
    "checkhostip",
    "cipher",
    "ciphers",
    "clearallforwardings",
    "compression",
    "compressionlevel",
    "connectionattempts",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "dsaauthentication",
    "dynamicforward",
    "enableescapecommandline",
    "enablesshkeysign",
    "escapechar",
    "exitonforwardfailure",
    "fallbacktorsh",
    "fingerprinthash",
    "forkafterauthentication",
    "forwardagent",
    "forwardx11",
    "forwardx11timeout",
    "forwardx11trusted",
    "gatewayports",
    "globalknownhostsfile2",
    "gssapiauthentication",
    "gssapiclientidentity",
    "gssapidelegatecredentials",
    "gssapikeyexchange",
    "gssapikexalgorithms",
    "gssapirenewalforcesrekey",
    "gssapiserveridentity",
    "gssapitrustdns",
    "hashknownhosts",
    "hostbasedacceptedalgorithms",
    "hostbasedauthentication",
    "hostbasedkeytypes",
    "hostkeyalgorithms",
    "ipqos",
    "kbdinteractiveauthentication",
    "kbdinteractivedevices",
    "kerberosauthentication",
    "kerberostgtpassing",
    "kexalgorithms",
    "localcommand",
    "localforward",
    "loglevel",
    "logverbose",
    "macs",
    "nohostauthenticationforlocalhost",
    "numberofpasswordprompts",
    "obscurekeystroketiming",
    "passwordauthentication",
    "permitlocalcommand",
    "permitremoteopen",
    "pkcs11provider",
    "preferredauthentications",
    "protocol",
    "proxyusefdpass",
    "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes",
    "pubkeyauthentication",
    "rekeylimit",
    "remotecommand",
    "remoteforward",
    "requesttty",
    "requiredrsasize",
    "revokedhostkeys",
    "rhostsauthentication",
    "rhostsrsaauthentication",
    "rsaauthentication",
    "securitykeyprovider",
    "sendenv",
    "serveralivecountmax",
    "sessiontype",
    "setenv",
    "skeyauthentication",
    "smartcarddevice",
    "stdinnull",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "syslogfacility",
    "tag",
    "tcpkeepalive",
    "tisauthentication",
    "tunnel",
    "tunneldevice",
    "updatehostkeys",
    "useblacklistedkeys",
    "usekeychain",
    "useprivilegedport",
    "user_known_hosts_file2",
    "userknownhostsfile2",
    "useroaming",
    "usersh",
    "verifyhostkeydns",
    "visualhostkey",
    "xauthlocation",
];

#[cfg(test)]
mod tests;
