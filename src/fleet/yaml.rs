//! Reading YAML into a tree that remembers where every node came from.
//!
//! The fleet repo is validated in three passes (YAML, JSON Schema, semantics) and every
//! diagnostic must point at `file:line:column`. Rather than thread spans through the typed
//! model, each document is read once into a [`Node`] tree (via `serde-saphyr`'s `Spanned`),
//! turned into a `serde_json::Value` plus a map from JSON pointer to position
//! ([`Positions`]); later passes locate any value by its pointer.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl Pos {
    fn from_location(loc: &serde_saphyr::Location) -> Pos {
        Pos {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX).max(1),
            column: u32::try_from(loc.column()).unwrap_or(u32::MAX).max(1),
        }
    }
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// The node's content.
    pub value: NodeValue,
}

/// The content of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    /// `~`, `null` or an empty value.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A negative integer.
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order: (key text, key position, value).
    Map(Vec<(String, Pos, Node)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<NodeValue>::deserialize(d)?;
        Ok(Node {
            pos: Pos::from_location(&spanned.referenced),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeValue, E> {
        Ok(if v >= 0 {
            NodeValue::UInt(v.unsigned_abs())
        } else {
            NodeValue::Int(v)
        })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeValue, E> {
        Ok(NodeValue::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeValue, E> {
        Ok(NodeValue::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let text = match key.value {
                NodeValue::Str(s) => s,
                NodeValue::Null => "null".to_owned(),
                NodeValue::Bool(b) => b.to_string(),
                NodeValue::Int(i) => i.to_string(),
                NodeValue::UInt(u) => u.to_string(),
                NodeValue::Float(f) => f.to_string(),
                NodeValue::Seq(_) | NodeValue::Map(_) => {
                    return Err(de::Error::custom("mapping keys must be scalars"))
                }
            };
            let value = map.next_value::<Node>()?;
            entries.push((text, key.pos, value));
        }
        Ok(NodeValue::Map(entries))
    }
}

/// Positions of every value (and every mapping key) of one document, by JSON pointer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Positions {
    values: BTreeMap<String, Pos>,
    keys: BTreeMap<String, Pos>,
}

impl Positions {
    /// Position of the value at `pointer` (RFC 6901, `""` is the document root).
    ///
    /// Falls back to the nearest ancestor that has a position, so a diagnostic about a
    /// missing field points at the mapping that lacks it.
    pub fn value(&self, pointer: &str) -> Pos {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Pos { line: 1, column: 1 },
            }
        }
    }

    /// Position of the mapping key that holds the value at `pointer`, or of the value.
    pub fn key(&self, pointer: &str) -> Pos {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.value(pointer))
    }

    /// The JSON pointer of the deepest value or mapping key at `pos`: which field a
    /// diagnostic at `pos` is about (`None` when nothing starts there).
    pub fn pointer_at(&self, pos: Pos) -> Option<&str> {
        self.values
            .iter()
            .chain(self.keys.iter())
            .filter(|(_, p)| **p == pos)
            .map(|(k, _)| k.as_str())
            .max_by_key(|k| (k.matches('/').count(), k.len()))
    }
}

/// One YAML document of a file, as JSON plus positions.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlDocument {
    /// 0-based index of the document in its file.
    pub index: usize,
    /// Position where the document starts.
    pub pos: Pos,
    /// The content as JSON (mapping order kept).
    pub value: serde_json::Value,
    /// Where each value is.
    pub positions: Positions,
}

/// A YAML syntax or resource-limit error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// Where the error is (line 1 column 1 when unknown).
    pub pos: Pos,
    /// What went wrong, without the position.
    pub message: String,
}

/// Largest file the loader reads: fleet repos are small; anything bigger is a mistake.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// Parses every document of a YAML stream.
///
/// Aliases, nesting depth and node counts are bounded by `serde-saphyr`'s budgets so that
/// alias bombs and deeply nested input fail fast with bounded memory.
pub fn parse_documents(text: &str) -> Result<Vec<YamlDocument>, YamlError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(YamlError {
            pos: Pos { line: 1, column: 1 },
            message: format!(
                "file is {} bytes, more than the {} bytes a fleet-repo file may have",
                text.len(),
                MAX_FILE_BYTES
            ),
        });
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 64,
            max_nodes: 200_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
        },
        with_snippet: false,
    };
    let lines = LineMap::new(text);
    let nodes: Vec<Node> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| {
            let pos = e
                .location()
                .map(|l| lines.to_file_pos(Pos::from_location(&l)))
                .unwrap_or(Pos { line: 1, column: 1 });
            YamlError {
                pos,
                message: clean_message(&e.to_string()),
            }
        })?;
    Ok(nodes
        .into_iter()
        .enumerate()
        .filter(|(_, n)| n.value != NodeValue::Null)
        .map(|(index, mut node)| {
            lines.remap(&mut node);
            let mut positions = Positions::default();
            let pos = node.pos;
            let value = to_json(node, String::new(), &mut positions);
            YamlDocument {
                index,
                pos,
                value,
                positions,
            }
        })
        .collect())
}

/// Translates YAML positions into the positions an editor shows.
///
/// YAML counts a lone carriage return as a line break; editors, `grep -n` and our readers
/// count only line feeds. Without this, a file with stray CRs (pasted from an old Mac
/// editor, or generated) gets diagnostics on lines past its end. CRLF needs nothing: both
/// count it as one break. Files without a lone CR (all real ones) take no extra work.
struct LineMap<'a> {
    text: &'a str,
    /// Byte offset at which each YAML line starts, when the file has a lone CR.
    yaml_line_starts: Option<Vec<usize>>,
    /// Byte offset of every line feed, for counting editor lines.
    newlines: Vec<usize>,
}

impl<'a> LineMap<'a> {
    fn new(text: &'a str) -> LineMap<'a> {
        let bytes = text.as_bytes();
        let lone_cr = |i: usize| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n');
        if !(0..bytes.len()).any(lone_cr) {
            return LineMap {
                text,
                yaml_line_starts: None,
                newlines: Vec::new(),
            };
        }
        let mut starts = vec![0];
        let mut newlines = Vec::new();
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                newlines.push(i);
                starts.push(i + 1);
            } else if lone_cr(i) {
                starts.push(i + 1);
            }
        }
        LineMap {
            text,
            yaml_line_starts: Some(starts),
            newlines,
        }
    }

    /// The editor position of a YAML position (1-based, character columns, as given).
    fn to_file_pos(&self, pos: Pos) -> Pos {
        let Some(starts) = &self.yaml_line_starts else {
            return pos;
        };
        let line_index = (pos.line as usize).saturating_sub(1).min(starts.len() - 1);
        let start = starts[line_index];
        // A YAML line holds no line feed, so its start has the editor line of every
        // character on it.
        let newlines_before = self.newlines.partition_point(|&n| n < start);
        let file_line_start = match newlines_before {
            0 => 0,
            n => self.newlines[n - 1] + 1,
        };
        // Breaks are single ASCII bytes, so both offsets are char boundaries. The
        // characters between them belong to earlier YAML lines on the same editor line,
        // which the YAML column did not count.
        let extra = self
            .text
            .get(file_line_start..start)
            .map_or(0, |s| s.chars().count());
        Pos {
            line: u32::try_from(newlines_before + 1).unwrap_or(u32::MAX),
            column: pos
                .column
                .saturating_add(u32::try_from(extra).unwrap_or(u32::MAX)),
        }
    }

    /// Rewrites every position in a node tree.
    fn remap(&self, node: &mut Node) {
        if self.yaml_line_starts.is_none() {
            return;
        }
        node.pos = self.to_file_pos(node.pos);
        match &mut node.value {
            NodeValue::Seq(items) => items.iter_mut().for_each(|n| self.remap(n)),
            NodeValue::Map(entries) => {
                for (_, key_pos, value) in entries {
                    *key_pos = self.to_file_pos(*key_pos);
                    self.remap(value);
                }
            }
            _ => {}
        }
    }
}

/// Drops the position suffix serde-saphyr appends; we print positions ourselves.
fn clean_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    let first = match first.find(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    let first = first.trim_start_matches("error: ");
    if let Some(rest) = first.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return format!("duplicate mapping key `{key}`");
    }
    if first == "recursion limit exceeded" {
        return "YAML nested too deeply (more than 64 levels)".to_owned();
    }
    if let Some(detail) = first.strip_prefix("budget breached: ") {
        return format!(
            "YAML resource limit exceeded ({detail}); fleet-repo files are small, so this is \
             an alias bomb or generated input"
        );
    }
    let mut s = first.to_owned();
    if let Some(c) = s.get(..1) {
        let lower = c.to_lowercase();
        s.replace_range(..1, &lower);
    }
    s
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn to_json(node: Node, pointer: String, positions: &mut Positions) -> serde_json::Value {
    use serde_json::Value;
    positions.values.insert(pointer.clone(), node.pos);
    match node.value {
        NodeValue::Null => Value::Null,
        NodeValue::Bool(b) => Value::Bool(b),
        NodeValue::Int(i) => Value::from(i),
        NodeValue::UInt(u) => Value::from(u),
        NodeValue::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        NodeValue::Str(s) => Value::String(s),
        NodeValue::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, n)| to_json(n, format!("{pointer}/{i}"), positions))
                .collect(),
        ),
        NodeValue::Map(entries) => {
            let mut map = serde_json::Map::new();
            for (key, key_pos, value) in entries {
                let child = format!("{pointer}/{}", escape_pointer(&key));
                positions.keys.insert(child.clone(), key_pos);
                let v = to_json(value, child, positions);
                map.insert(key, v);
            }
            Value::Object(map)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_values_and_keys() {
        let docs = parse_documents("a: 1\nb:\n  - x\n  - {c: d}\n---\nz: true\n").unwrap();
        assert_eq!(docs.len(), 2);
        let d = &docs[0];
        assert_eq!(d.positions.value("/a"), Pos { line: 1, column: 4 });
        assert_eq!(d.positions.key("/a"), Pos { line: 1, column: 1 });
        assert_eq!(d.positions.value("/b/1/c"), Pos { line: 4, column: 9 });
        assert_eq!(d.positions.key("/b/1/c"), Pos { line: 4, column: 6 });
        assert_eq!(docs[1].positions.value("/z"), Pos { line: 6, column: 4 });
        // Missing pointers fall back to the nearest ancestor.
        assert_eq!(
            d.positions.value("/b/1/missing"),
            Pos { line: 4, column: 5 }
        );
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse_documents("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(e.pos.line >= 2, "{e:?}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let e = parse_documents("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.pos.line, 2, "{e:?}");
        assert!(e.message.contains("duplicate"), "{e:?}");
    }

    #[test]
    fn alias_bomb_fails_fast() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..20 {
            let p = i - 1;
            s.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse_documents(&s).unwrap_err();
        assert!(!e.message.is_empty());
    }

    #[test]
    fn deep_nesting_fails_fast() {
        let s = "[".repeat(100_000);
        assert!(parse_documents(&s).is_err());
        let mut s = String::new();
        for i in 0..10_000 {
            s.push_str(&" ".repeat(i));
            s.push_str("- \n");
        }
        let _ = parse_documents(&s);
    }

    #[test]
    fn empty_and_comment_only_files_have_no_documents() {
        assert!(parse_documents("").unwrap().is_empty());
        assert!(parse_documents("# nothing\n").unwrap().is_empty());
        assert!(parse_documents("---\n---\n").unwrap().is_empty());
    }

    #[test]
    fn lone_carriage_returns_do_not_move_positions_past_the_file() {
        // Found by the `fleet_repo` fuzz target: YAML counts a lone CR as a line break,
        // so 70 CRs inside a quoted scalar put the error on line 79 of a 9-line file.
        let text = format!(
            "apiVersion: patchkeeper.io/v1\nkind: MaintenanceWindow\nmetadata:\n  name: w\n\
             spec:\n  schedule: \"0 2 * {}* *\"\n  duration: 2h\n  timezone: UTC\n\
             bad: [\n",
            "\r".repeat(70)
        );
        let e = parse_documents(&text).unwrap_err();
        let lines = text.lines().count() as u32;
        assert!(e.pos.line <= lines + 1, "{e:?} in a {lines}-line file");
        // Positions of nodes after the CRs are on the editor's lines too.
        let ok = text.replace("bad: [\n", "after: x\n");
        let docs = parse_documents(&ok).unwrap();
        assert_eq!(docs[0].positions.key("/after"), Pos { line: 9, column: 1 });
        assert_eq!(
            docs[0].positions.value("/spec/duration"),
            Pos {
                line: 7,
                column: 13
            }
        );
    }

    #[test]
    fn a_lone_carriage_return_inside_a_line_shifts_the_column_not_the_line() {
        // "a: 1\rb: é" is two YAML lines but one editor line; `b`'s YAML column is 1.
        let docs = parse_documents("x: 0\na: 1\rb: é\nc: 2\n").unwrap();
        let p = &docs[0].positions;
        assert_eq!(p.key("/b"), Pos { line: 2, column: 6 });
        assert_eq!(p.value("/b"), Pos { line: 2, column: 9 });
        assert_eq!(p.key("/c"), Pos { line: 3, column: 1 });
        // CRLF files need no translation: both count CRLF as one break.
        let docs = parse_documents("a: 1\r\nb: 2\r\n").unwrap();
        assert_eq!(docs[0].positions.key("/b"), Pos { line: 2, column: 1 });
    }
}
