//! Ansible inventories as patchkeeper inventories: the static INI and YAML formats and the
//! dynamic-inventory JSON (`ansible-inventory --list`, an inventory script's `--list`)
//! parsed into one model ([`AnsibleInventory`]), then converted ([`convert`]) into an
//! Inventory: groups (children flattened into membership, `all` and `ungrouped` implied),
//! hosts, and the connection variables patchkeeper has equivalents for, with Ansible's
//! variable precedence (all, then parent before child groups, same depth by name, then the
//! host). Everything else is listed as not imported, never dropped silently; secrets
//! (passwords) are never copied.
//!
//! Pure: text in, data out. `patchkeeper import ansible` and the Inventory's `ansible`
//! source (read by the fleet loader) do the I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::model::{Group, Host, InventorySpec, SshSettings, TransportKind};

/// An Ansible inventory, whatever its format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnsibleInventory {
    /// Groups by name (`all` and `ungrouped` included when the source names them).
    pub groups: BTreeMap<String, AnsibleGroup>,
    /// Variables of each host, by host (every host appears here, maybe with no vars).
    pub hosts: BTreeMap<String, Map<String, Value>>,
}

/// One Ansible group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnsibleGroup {
    /// Hosts listed in it directly.
    pub hosts: BTreeSet<String>,
    /// Child groups.
    pub children: BTreeSet<String>,
    /// Group variables.
    pub vars: Map<String, Value>,
}

/// The three formats Ansible reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The INI format (`[group]`, `[group:vars]`, `[group:children]`).
    Ini,
    /// The YAML format (`all: {hosts: …, children: …}`).
    Yaml,
    /// The dynamic-inventory JSON (`{"_meta": {"hostvars": …}, "group": {…}}`).
    Json,
}

/// An inventory that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct AnsibleError {
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

fn err(line: Option<usize>, message: impl Into<String>) -> AnsibleError {
    AnsibleError {
        line,
        message: message.into(),
    }
}

/// Guesses the format: JSON starts with `{`; INI has `[section]` headers; YAML starts with
/// `---` or a `key:`; anything else (bare host lines) is INI.
pub fn detect(text: &str) -> Format {
    let lines = || {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
    };
    let first = lines().next().unwrap_or("");
    if first.starts_with('{') {
        Format::Json
    } else if lines().any(|l| l.starts_with('[') && l.ends_with(']') && !l.contains(": ")) {
        Format::Ini
    } else if first == "---" || first.ends_with(':') || first.contains(": ") {
        Format::Yaml
    } else {
        Format::Ini
    }
}

/// Parses an inventory in `format`.
pub fn parse(text: &str, format: Format) -> Result<AnsibleInventory, AnsibleError> {
    match format {
        Format::Ini => parse_ini(text),
        Format::Yaml => parse_yaml(text),
        Format::Json => parse_json(text),
    }
}

impl AnsibleInventory {
    fn group(&mut self, name: &str) -> &mut AnsibleGroup {
        self.groups.entry(name.to_owned()).or_default()
    }

    fn add_host(&mut self, group: &str, host: &str, vars: Map<String, Value>) {
        self.group(group).hosts.insert(host.to_owned());
        let h = self.hosts.entry(host.to_owned()).or_default();
        for (k, v) in vars {
            h.insert(k, v);
        }
    }
}

// ---------------------------------------------------------------------------------------
// INI

fn parse_ini(text: &str) -> Result<AnsibleInventory, AnsibleError> {
    enum Section {
        Hosts(String),
        Vars(String),
        Children(String),
    }
    let mut inv = AnsibleInventory::default();
    let mut expanded = 0;
    let mut section = Section::Hosts("ungrouped".to_owned());
    for (i, raw) in text.lines().enumerate() {
        let line_no = Some(i + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header
                .strip_suffix(']')
                .ok_or_else(|| err(line_no, format!("section header `{line}` lacks `]`")))?;
            section = match header.split_once(':') {
                Some((g, "vars")) => Section::Vars(g.to_owned()),
                Some((g, "children")) => Section::Children(g.to_owned()),
                Some((_, other)) => {
                    return Err(err(
                        line_no,
                        format!("section `[{header}]`: unknown suffix `:{other}` (expected :vars or :children)"),
                    ))
                }
                None => Section::Hosts(header.to_owned()),
            };
            match &section {
                Section::Hosts(g) | Section::Vars(g) | Section::Children(g) => {
                    inv.group(g);
                }
            }
            continue;
        }
        match &section {
            Section::Hosts(group) => {
                let words = shell_words(line).map_err(|m| err(line_no, m))?;
                let Some((pattern, rest)) = words.split_first() else {
                    continue;
                };
                let mut vars = Map::new();
                for kv in rest {
                    let (k, v) = kv.split_once('=').ok_or_else(|| {
                        err(
                            line_no,
                            format!("`{kv}`: expected key=value after the host"),
                        )
                    })?;
                    vars.insert(k.to_owned(), ini_value(v));
                }
                // `host:port` (not for IPv6 literals, which have several colons).
                let (pattern, port) = match pattern.rsplit_once(':') {
                    Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => {
                        (h.to_owned(), Some(p.to_owned()))
                    }
                    _ => (pattern.clone(), None),
                };
                if let Some(p) = port {
                    vars.entry("ansible_port").or_insert_with(|| ini_value(&p));
                }
                let hosts = expand_range(&pattern).map_err(|m| err(line_no, m))?;
                count_expanded(&mut expanded, hosts.len()).map_err(|m| err(line_no, m))?;
                for host in hosts {
                    inv.add_host(group, &host, vars.clone());
                }
            }
            Section::Vars(group) => {
                let (k, v) = line.split_once('=').ok_or_else(|| {
                    err(
                        line_no,
                        format!("`{line}`: expected key=value in [{group}:vars]"),
                    )
                })?;
                let v = v.trim();
                let v = shell_words(v)
                    .ok()
                    .filter(|w| w.len() == 1)
                    .map(|mut w| w.remove(0))
                    .unwrap_or_else(|| v.to_owned());
                inv.group(group)
                    .vars
                    .insert(k.trim().to_owned(), ini_value(&v));
            }
            Section::Children(group) => {
                let child = line.to_owned();
                inv.group(&child);
                inv.group(group).children.insert(child);
            }
        }
    }
    Ok(inv)
}

/// A value as Ansible's INI reader types it: integers and True/False, else text.
fn ini_value(v: &str) -> Value {
    if let Ok(n) = v.parse::<i64>() {
        return Value::from(n);
    }
    match v {
        "True" | "true" => Value::Bool(true),
        "False" | "false" => Value::Bool(false),
        _ => Value::String(v.to_owned()),
    }
}

/// Splits like `shlex.split`: whitespace, single and double quotes, backslashes.
fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == '\\' => match chars.next() {
                Some(n) => word.push(n),
                None => return Err("trailing backslash".into()),
            },
            Some(_) => word.push(c),
            None if c == '#' && !in_word => break,
            None if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c == '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            None => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unclosed quote in `{s}`"));
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

/// The most hosts one pattern may expand to: a typo in a range must not make the controller
/// hold billions of names.
const MAX_RANGE_HOSTS: usize = 100_000;

/// The most host entries (a host in a group) the ranges of one inventory may expand to: each
/// pattern is within [`MAX_RANGE_HOSTS`], but a file of patterns could still multiply them.
const MAX_EXPANDED_ENTRIES: usize = 10 * MAX_RANGE_HOSTS;

/// Adds `n` expanded entries to the inventory's count; an error past
/// [`MAX_EXPANDED_ENTRIES`].
fn count_expanded(expanded: &mut usize, n: usize) -> Result<(), String> {
    *expanded = expanded.saturating_add(n);
    if *expanded > MAX_EXPANDED_ENTRIES {
        return Err(format!(
            "host ranges expand to more than {MAX_EXPANDED_ENTRIES} host entries in all"
        ));
    }
    Ok(())
}

/// Expands Ansible host ranges: `web[01:03].example` → web01, web02, web03; `db-[a:c]`;
/// `[1:10:2]` with a stride. Several ranges multiply.
pub fn expand_range(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_owned()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|c| open + c)
        .ok_or_else(|| format!("host range in `{pattern}` lacks `]`"))?;
    let (head, inner, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let parts: Vec<&str> = inner.split(':').collect();
    let (start, end, stride) = match parts.as_slice() {
        [s, e] => (*s, *e, 1usize),
        [s, e, st] => (
            *s,
            *e,
            st.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("bad stride in `{pattern}`"))?,
        ),
        _ => {
            return Err(format!(
                "host range `[{inner}]` in `{pattern}`: expected [start:end]"
            ))
        }
    };
    let items: Vec<String> = if let (Ok(a), Ok(b)) = (start.parse::<u64>(), end.parse::<u64>()) {
        if a > b {
            return Err(format!("host range `[{inner}]` in `{pattern}` counts down"));
        }
        if (b - a) / stride as u64 > MAX_RANGE_HOSTS as u64 {
            return Err(format!(
                "host range `[{inner}]` in `{pattern}` is too large"
            ));
        }
        let width = if start.len() > 1 && start.starts_with('0') {
            start.len()
        } else {
            0
        };
        (a..=b)
            .step_by(stride)
            .map(|n| format!("{n:0width$}"))
            .collect()
    } else {
        let (Some(a), Some(b)) = (single_letter(start), single_letter(end)) else {
            return Err(format!(
                "host range `[{inner}]` in `{pattern}`: expected numbers or letters"
            ));
        };
        if a > b {
            return Err(format!("host range `[{inner}]` in `{pattern}` counts down"));
        }
        (a..=b).step_by(stride).map(|c| c.to_string()).collect()
    };
    let rest = expand_range(tail)?;
    // Several ranges multiply: each within the limit can still ask for billions of names.
    if items.len().saturating_mul(rest.len()) > MAX_RANGE_HOSTS {
        return Err(format!(
            "host ranges in `{pattern}` name more than {MAX_RANGE_HOSTS} hosts"
        ));
    }
    Ok(items
        .iter()
        .flat_map(|i| rest.iter().map(move |r| format!("{head}{i}{r}")))
        .collect())
}

fn single_letter(s: &str) -> Option<char> {
    let mut c = s.chars();
    match (c.next(), c.next()) {
        (Some(l), None) if l.is_ascii_alphabetic() => Some(l),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// YAML

fn parse_yaml(text: &str) -> Result<AnsibleInventory, AnsibleError> {
    let docs = crate::fleet::yaml::parse_documents(text)
        .map_err(|e| err(Some(e.pos.line as usize), e.message))?;
    let mut inv = AnsibleInventory::default();
    let Some(doc) = docs.into_iter().next() else {
        return Ok(inv);
    };
    let top = match doc.value {
        Value::Object(m) => m,
        Value::Null => return Ok(inv),
        _ => return Err(err(None, "expected a mapping of group names at the top")),
    };
    let mut expanded = 0;
    for (name, group) in top {
        yaml_group(&mut inv, &name, &group, &mut expanded)?;
    }
    Ok(inv)
}

fn yaml_group(
    inv: &mut AnsibleInventory,
    name: &str,
    value: &Value,
    expanded: &mut usize,
) -> Result<(), AnsibleError> {
    inv.group(name);
    let body = match value {
        Value::Null => return Ok(()),
        Value::Object(m) => m,
        _ => return Err(err(None, format!("group `{name}`: expected a mapping"))),
    };
    for (key, v) in body {
        match key.as_str() {
            "hosts" => match v {
                Value::Null => {}
                Value::Object(hosts) => {
                    for (pattern, vars) in hosts {
                        let vars = match vars {
                            Value::Null => Map::new(),
                            Value::Object(m) => m.clone(),
                            _ => {
                                return Err(err(
                                    None,
                                    format!(
                                    "host `{pattern}` in `{name}`: expected a mapping of variables"
                                ),
                                ))
                            }
                        };
                        let hosts = expand_range(pattern).map_err(|m| err(None, m))?;
                        count_expanded(expanded, hosts.len()).map_err(|m| err(None, m))?;
                        for host in hosts {
                            inv.add_host(name, &host, vars.clone());
                        }
                    }
                }
                _ => {
                    return Err(err(
                        None,
                        format!("`hosts` of `{name}`: expected a mapping of host names"),
                    ))
                }
            },
            "vars" => match v {
                Value::Null => {}
                Value::Object(vars) => {
                    let g = inv.group(name);
                    for (k, val) in vars {
                        g.vars.insert(k.clone(), val.clone());
                    }
                }
                _ => return Err(err(None, format!("`vars` of `{name}`: expected a mapping"))),
            },
            "children" => match v {
                Value::Null => {}
                Value::Object(children) => {
                    for (child, body) in children {
                        inv.group(name).children.insert(child.clone());
                        yaml_group(inv, child, body, expanded)?;
                    }
                }
                _ => {
                    return Err(err(
                        None,
                        format!("`children` of `{name}`: expected a mapping of groups"),
                    ))
                }
            },
            other => {
                return Err(err(
                    None,
                    format!(
                        "group `{name}`: unknown key `{other}` (expected hosts, vars, children)"
                    ),
                ))
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Dynamic inventory JSON

fn parse_json(text: &str) -> Result<AnsibleInventory, AnsibleError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| err(Some(e.line()), format!("not JSON: {e}")))?;
    let Value::Object(top) = value else {
        return Err(err(None, "expected a JSON object of groups"));
    };
    let mut inv = AnsibleInventory::default();
    let mut hostvars = Map::new();
    for (name, body) in top {
        if name == "_meta" {
            if let Some(Value::Object(hv)) = body.get("hostvars") {
                hostvars = hv.clone();
            }
            continue;
        }
        inv.group(&name);
        match body {
            // The old form: a group is a list of hosts.
            Value::Array(hosts) => {
                for h in hosts {
                    let h = h.as_str().ok_or_else(|| {
                        err(None, format!("group `{name}`: hosts must be strings"))
                    })?;
                    inv.add_host(&name, h, Map::new());
                }
            }
            Value::Object(g) => {
                for (key, v) in g {
                    let list = |v: &Value| -> Result<Vec<String>, AnsibleError> {
                        v.as_array()
                            .ok_or_else(|| {
                                err(None, format!("`{key}` of `{name}`: expected a list"))
                            })?
                            .iter()
                            .map(|h| {
                                h.as_str().map(str::to_owned).ok_or_else(|| {
                                    err(None, format!("`{key}` of `{name}`: expected strings"))
                                })
                            })
                            .collect()
                    };
                    match key.as_str() {
                        "hosts" => {
                            for h in list(&v)? {
                                inv.add_host(&name, &h, Map::new());
                            }
                        }
                        "children" => {
                            for c in list(&v)? {
                                inv.group(&c);
                                inv.group(&name).children.insert(c);
                            }
                        }
                        "vars" => {
                            let Value::Object(vars) = v else {
                                return Err(err(
                                    None,
                                    format!("`vars` of `{name}`: expected an object"),
                                ));
                            };
                            inv.group(&name).vars.extend(vars);
                        }
                        _ => {}
                    }
                }
            }
            _ => {
                return Err(err(
                    None,
                    format!("group `{name}`: expected an object or a list"),
                ))
            }
        }
    }
    for (host, vars) in hostvars {
        let Value::Object(vars) = vars else {
            return Err(err(
                None,
                format!("_meta.hostvars of `{host}`: expected an object"),
            ));
        };
        let h = inv.hosts.entry(host).or_default();
        h.extend(vars);
    }
    Ok(inv)
}

// ---------------------------------------------------------------------------------------
// Conversion

/// How to convert.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Variables to import as host labels (a label is only useful for selection).
    pub labels: Vec<String>,
}

/// The converted inventory and what did not make it.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// Groups and hosts.
    pub spec: InventorySpec,
    /// One line per thing not imported (or imported differently), for people.
    pub lossy: Vec<String>,
}

/// A host name patchkeeper accepts (the Inventory schema's pattern).
fn valid_host_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// An address patchkeeper accepts.
fn valid_address(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._:%-".contains(&c))
}

/// A login name patchkeeper accepts.
fn valid_user(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=32).contains(&b.len())
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// A group name patchkeeper accepts (lowercase letters, digits, `. _ -`).
fn group_name(name: &str) -> Option<String> {
    let lowered: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = lowered.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_i64() != Some(0)),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "true" | "1" | "on" | "y" => Some(true),
            "no" | "false" | "0" | "off" | "n" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Variables that hold secrets: never copied, only named.
const SECRETS: &[&str] = &[
    "ansible_password",
    "ansible_ssh_pass",
    "ansible_ssh_password",
    "ansible_become_pass",
    "ansible_become_password",
    "ansible_sudo_pass",
    "ansible_sudo_password",
    "ansible_ssh_private_key_passphrase",
];

/// Converts to a patchkeeper inventory.
pub fn convert(inv: &AnsibleInventory, options: &Options) -> Imported {
    let mut lossy: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut note = |what: String, who: &str| {
        lossy.entry(what).or_default().insert(who.to_owned());
    };

    // Parents of each group, and each group's depth below `all` (Ansible's merge order).
    let mut parents: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, g) in &inv.groups {
        for c in &g.children {
            parents.entry(c.as_str()).or_default().insert(name.as_str());
        }
    }
    fn depth<'a>(
        g: &'a str,
        parents: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        seen: &mut Vec<&'a str>,
    ) -> usize {
        if g == "all" || seen.contains(&g) {
            return 0;
        }
        seen.push(g);
        let d = parents
            .get(g)
            .map(|ps| {
                ps.iter()
                    .map(|p| depth(p, parents, seen))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
            + 1;
        seen.pop();
        d
    }
    fn ancestors<'a>(
        g: &'a str,
        parents: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        out: &mut BTreeSet<&'a str>,
    ) {
        if let Some(ps) = parents.get(g) {
            for p in ps {
                if out.insert(p) {
                    ancestors(p, parents, out);
                }
            }
        }
    }

    // Group names as patchkeeper writes them.
    let mut names: BTreeMap<&str, String> = BTreeMap::new();
    for name in inv.groups.keys() {
        if name == "all" || name == "ungrouped" {
            continue;
        }
        match group_name(name) {
            Some(n) => {
                if n != *name {
                    note(format!("group `{name}` is imported as `{n}` (group names are lowercase letters, digits, `. _ -`)"), "");
                }
                names.insert(name.as_str(), n);
            }
            None => note(
                format!("group `{name}` has no usable name: not imported"),
                "",
            ),
        }
    }

    let mut hosts = Vec::new();
    for (host, host_vars) in &inv.hosts {
        // Every group the host is in, directly or through children.
        let mut groups: BTreeSet<&str> = BTreeSet::new();
        for (gname, g) in &inv.groups {
            if g.hosts.contains(host) {
                groups.insert(gname.as_str());
                ancestors(gname, &parents, &mut groups);
            }
        }
        // Variables: all, then groups by (depth, name), then the host.
        let mut ordered: Vec<(usize, &str)> = groups
            .iter()
            .filter(|g| **g != "all")
            .map(|g| (depth(g, &parents, &mut Vec::new()), *g))
            .collect();
        ordered.sort();
        let mut vars: Map<String, Value> = Map::new();
        let mut origin: BTreeMap<String, String> = BTreeMap::new();
        if let Some(all) = inv.groups.get("all") {
            for (k, v) in &all.vars {
                vars.insert(k.clone(), v.clone());
                origin.insert(k.clone(), "group all".to_owned());
            }
        }
        for (_, g) in &ordered {
            if let Some(group) = inv.groups.get(*g) {
                for (k, v) in &group.vars {
                    vars.insert(k.clone(), v.clone());
                    origin.insert(k.clone(), format!("group {g}"));
                }
            }
        }
        for (k, v) in host_vars {
            vars.insert(k.clone(), v.clone());
            origin.insert(k.clone(), format!("host {host}"));
        }
        let from = |k: &str| origin.get(k).cloned().unwrap_or_default();

        fn get<'v>(
            vars: &'v Map<String, Value>,
            keys: &[&'static str],
        ) -> Option<(&'static str, &'v Value)> {
            keys.iter().find_map(|k| vars.get(*k).map(|v| (*k, v)))
        }
        let mut ssh = SshSettings::default();
        let mut transport = None;
        let mut address = None;
        let mut skip = None;
        let mut used: BTreeSet<&str> = BTreeSet::new();

        if let Some((k, v)) = get(&vars, &["ansible_connection"]) {
            used.insert(k);
            match text(v).as_deref() {
                Some("ssh" | "smart" | "paramiko" | "paramiko_ssh" | "ansible.builtin.ssh") => {}
                Some("local" | "ansible.builtin.local") => transport = Some(TransportKind::Local),
                other => {
                    skip = Some(format!(
                        "`ansible_connection: {}` is not SSH",
                        other.unwrap_or("?")
                    ))
                }
            }
        }
        if let Some((k, v)) = get(&vars, &["ansible_host", "ansible_ssh_host"]) {
            used.insert(k);
            match text(v) {
                Some(a) if valid_address(&a) => address = Some(a),
                _ => note(
                    format!("`{k}: {v}` is not an address patchkeeper accepts: not imported"),
                    &from(k),
                ),
            }
        }
        if let Some((k, v)) = get(&vars, &["ansible_port", "ansible_ssh_port"]) {
            used.insert(k);
            match text(v)
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p > 0)
            {
                Some(p) => ssh.port = Some(p),
                None => note(format!("`{k}: {v}` is not a port: not imported"), &from(k)),
            }
        }
        if let Some((k, v)) = get(&vars, &["ansible_user", "ansible_ssh_user"]) {
            used.insert(k);
            match text(v) {
                Some(u) if valid_user(&u) => ssh.user = Some(u),
                _ => note(
                    format!("`{k}: {v}` is not a user name patchkeeper accepts: not imported"),
                    &from(k),
                ),
            }
        }
        if let Some((k, v)) = get(
            &vars,
            &["ansible_ssh_private_key_file", "ansible_private_key_file"],
        ) {
            used.insert(k);
            match text(v) {
                Some(f) if !f.is_empty() && !f.chars().any(|c| c.is_control()) => {
                    ssh.identity_file = Some(f)
                }
                _ => note(
                    format!("`{k}` is not a usable path: not imported"),
                    &from(k),
                ),
            }
        }
        let become_ = get(&vars, &["ansible_become", "ansible_sudo"]);
        if let Some((k, v)) = become_ {
            used.insert(k);
            if truthy(v) == Some(true) {
                if let Some((mk, method)) = get(&vars, &["ansible_become_method"]) {
                    used.insert(mk);
                    if text(method).as_deref() != Some("sudo") {
                        note(format!("`ansible_become_method: {method}`: patchkeeper escalates with `sudo -n` only"), &from(mk));
                    }
                }
                if let Some((uk, user)) = get(&vars, &["ansible_become_user", "ansible_sudo_user"])
                {
                    used.insert(uk);
                    if text(user).as_deref() != Some("root") {
                        note(
                            format!("`{uk}: {user}`: patchkeeper escalates to root only"),
                            &from(uk),
                        );
                    }
                }
                if ssh.user.as_deref() != Some("root") {
                    ssh.sudo = Some(true);
                }
            }
        } else {
            for k in ["ansible_become_method", "ansible_become_user"] {
                if vars.contains_key(k) {
                    used.insert(k);
                }
            }
        }
        for k in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
            if let Some(v) = vars.get(k) {
                used.insert(k);
                let (jump, rest) = proxy_jump_in(&text(v).unwrap_or_default());
                if let Some(j) = jump {
                    ssh.proxy_jump.get_or_insert(j);
                }
                if !rest.is_empty() {
                    note(format!("`{k}`: `{}` not imported (only ProxyJump, -J and a `ssh -W %h:%p` ProxyCommand are)", rest.join(" ")), &from(k));
                }
            }
        }
        let mut labels = BTreeMap::new();
        for l in &options.labels {
            if let Some(v) = vars.get(l) {
                used.insert(l.as_str());
                match text(v) {
                    Some(t) => {
                        labels.insert(l.clone(), t);
                    }
                    None => note(
                        format!("`{l}` is not a scalar: not imported as a label"),
                        &from(l),
                    ),
                }
            }
        }
        for k in vars.keys() {
            if used.contains(k.as_str()) {
                continue;
            }
            if SECRETS.contains(&k.as_str()) {
                note(format!("`{k}` (a secret) is never imported: use keys, an agent and passwordless sudo"), &from(k));
            } else if k.starts_with("ansible_") {
                note(
                    format!("`{k}` has no patchkeeper equivalent: not imported"),
                    &from(k),
                );
            } else {
                note(format!("`{k}` is not a connection setting: not imported (`--labels {k}` imports it as a label)"), &from(k));
            }
        }
        if let Some(why) = skip {
            note(format!("host `{host}` is not imported: {why}"), "");
            continue;
        }
        let name = if valid_host_name(host) {
            host.clone()
        } else {
            let n: String = host
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            let n = n
                .trim_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_owned();
            if n.is_empty() {
                note(
                    format!("host `{host}` has no usable name: not imported"),
                    "",
                );
                continue;
            }
            note(format!("host `{host}` is imported as `{n}`"), "");
            if address.is_none() && valid_address(host) {
                address = Some(host.clone());
            }
            n
        };
        hosts.push(Host {
            name,
            address,
            transport,
            package_manager: None,
            groups: groups
                .iter()
                .filter_map(|g| names.get(g).cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            labels,
            ssh: (ssh != SshSettings::default()).then_some(ssh),
        });
    }
    let groups: Vec<Group> = names
        .values()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|n| Group {
            name: n.clone(),
            description: None,
        })
        .collect();
    let lossy = lossy
        .into_iter()
        .map(|(what, who)| {
            let who: Vec<String> = who.into_iter().filter(|w| !w.is_empty()).collect();
            if who.is_empty() {
                what
            } else {
                format!("{what} ({})", who.join(", "))
            }
        })
        .collect();
    Imported {
        spec: InventorySpec {
            groups,
            hosts,
            ..InventorySpec::default()
        },
        lossy,
    }
}

/// The jump hosts in ssh arguments (`-J X`, `-o ProxyJump=X`, or the classic
/// `-o ProxyCommand="ssh -W %h:%p [-q] [-p PORT] [user@]bastion"`), and the other words.
fn proxy_jump_in(args: &str) -> (Option<String>, Vec<String>) {
    let words = shell_words(args).unwrap_or_else(|_| vec![args.to_owned()]);
    let mut jump = None;
    let mut rest = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let option = if w == "-o" {
            i += 1;
            words.get(i).cloned()
        } else {
            w.strip_prefix("-o")
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
        };
        if w == "-J" {
            i += 1;
            jump = words.get(i).cloned();
        } else if let Some(j) = w.strip_prefix("-J").filter(|j| !j.is_empty()) {
            jump = Some(j.to_owned());
        } else if let Some(opt) = option {
            let (k, v) = opt.split_once('=').unwrap_or((&opt, ""));
            match k.to_ascii_lowercase().as_str() {
                "proxyjump" => jump = Some(v.to_owned()),
                "proxycommand" => match bastion_of(v) {
                    Some(j) => jump = Some(j),
                    None => rest.push(format!("-o {opt}")),
                },
                _ => rest.push(format!("-o {opt}")),
            }
        } else {
            rest.push(w.clone());
        }
        i += 1;
    }
    (jump, rest)
}

/// `ssh -W %h:%p [-q] [-p PORT] [-l USER] [user@]host` as a ProxyJump hop.
fn bastion_of(command: &str) -> Option<String> {
    let words = shell_words(command).ok()?;
    let (first, args) = words.split_first()?;
    if first != "ssh" && !first.ends_with("/ssh") {
        return None;
    }
    let (mut port, mut user, mut host, mut forwards) = (None, None, None, false);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-W" => {
                i += 1;
                forwards = args.get(i).map(String::as_str) == Some("%h:%p");
            }
            "-q" | "-T" | "-A" | "-x" => {}
            "-p" => {
                i += 1;
                port = args.get(i).cloned();
            }
            "-l" => {
                i += 1;
                user = args.get(i).cloned();
            }
            a if a.starts_with('-') => return None,
            a if host.is_none() => host = Some(a.to_owned()),
            _ => return None,
        }
        i += 1;
    }
    let host = host?;
    if !forwards {
        return None;
    }
    let mut hop = String::new();
    if let Some(u) = user {
        if !host.contains('@') {
            hop.push_str(&u);
            hop.push('@');
        }
    }
    hop.push_str(&host);
    if let Some(p) = port {
        hop.push(':');
        hop.push_str(&p);
    }
    Some(hop)
}

// ---------------------------------------------------------------------------------------
// Rendering

/// Characters YAML does not allow raw in a document (outside its printable set: C0 and C1
/// controls, DEL, the BOM inside a stream, U+FFFE/U+FFFF) or reads as line breaks (CR,
/// NEL, LS, PS); `\t` and `\n` are the caller's business.
fn yaml_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t' && c != '\n')
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
}

/// A YAML double-quoted scalar: `"` and `\` escaped, every character YAML does not allow raw
/// (and tab and newline) as a `\uXXXX` escape, so any name an inventory holds reads back.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c == '\t' || c == '\n' || yaml_unsafe(c) => {
                out.push_str(&format!("\\u{:04X}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text for a `#` comment line: newlines as spaces, characters YAML does not allow raw (a
/// control character from an inventory would make the whole document unreadable, a CR
/// would end the comment) escaped.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' => " ".to_owned(),
            c if yaml_unsafe(c) => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// A YAML scalar: bare when plain and unambiguous, else double-quoted.
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().next().is_some_and(|c| {
            c.is_ascii_alphabetic() || c == '.' || c == '/' || c == '~' || c == '_'
        })
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/~@-".contains(c))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "~"
        );
    if plain {
        s.to_owned()
    } else {
        quoted(s)
    }
}

/// The Inventory document, with a header naming the source and what was not imported.
pub fn render(imported: &Imported, name: &str, source: &str) -> String {
    let mut out = String::new();
    out.push_str("# yaml-language-server: $schema=../schemas/inventory.schema.json\n");
    out.push_str(&format!(
        "# Imported from the Ansible inventory `{}` by `patchkeeper import ansible`.\n",
        comment(source)
    ));
    if imported.lossy.is_empty() {
        out.push_str("# Everything was imported.\n");
    } else {
        out.push_str("# Not imported, or imported differently:\n");
        for l in &imported.lossy {
            out.push_str(&format!("#   - {}\n", comment(l)));
        }
    }
    out.push_str(&format!(
        "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata:\n  name: {}\nspec:\n",
        scalar(name)
    ));
    let spec = &imported.spec;
    if spec.groups.is_empty() {
        out.push_str("  groups: []\n");
    } else {
        out.push_str("  groups:\n");
        for g in &spec.groups {
            out.push_str(&format!("    - name: {}\n", scalar(&g.name)));
        }
    }
    if spec.hosts.is_empty() {
        out.push_str("  hosts: []\n");
    } else {
        out.push_str("  hosts:\n");
    }
    for h in &spec.hosts {
        out.push_str(&format!("    - name: {}\n", scalar(&h.name)));
        if let Some(a) = &h.address {
            out.push_str(&format!("      address: {}\n", scalar(a)));
        }
        if h.transport == Some(TransportKind::Local) {
            out.push_str("      transport: local\n");
        }
        out.push_str(&format!(
            "      groups: [{}]\n",
            h.groups
                .iter()
                .map(|g| scalar(g))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if !h.labels.is_empty() {
            out.push_str("      labels:\n");
            for (k, v) in &h.labels {
                out.push_str(&format!("        {}: {}\n", scalar(k), scalar(v)));
            }
        }
        if let Some(s) = &h.ssh {
            out.push_str("      ssh:\n");
            if let Some(u) = &s.user {
                out.push_str(&format!("        user: {}\n", scalar(u)));
            }
            if let Some(p) = s.port {
                out.push_str(&format!("        port: {p}\n"));
            }
            if let Some(f) = &s.identity_file {
                out.push_str(&format!("        identityFile: {}\n", scalar(f)));
            }
            if let Some(j) = &s.proxy_jump {
                out.push_str(&format!("        proxyJump: {}\n", scalar(j)));
            }
            if s.sudo == Some(true) {
                out.push_str("        sudo: true\n");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
