//! The YAML tree as JSON: each document of a stream as a `serde_json::Value`, with the line of
//! every node, for tools that evaluate Kubernetes objects and report `file:line` (`wharf lint`).
//!
//! Scalars are resolved with the YAML 1.2 core schema, as Kubernetes' own YAML decoder does:
//! plain `null`, `Null`, `NULL`, `~` and the empty scalar are null; `true`/`True`/`TRUE` and
//! `false`/`False`/`FALSE` are booleans; decimal, `0o` octal and `0x` hexadecimal integers and
//! decimal floats are numbers. Everything else is a string: YAML 1.1's `yes`, `on`, `no`, `off`,
//! quoted and block scalars, scalars tagged `!!str` or `!`, and `.inf`/`.nan` (which JSON cannot
//! hold). Merge keys (`<<: *base`) are applied. Aliases are expanded, within a budget: a stream
//! whose aliases would add more than [`ALIAS_BUDGET`] nodes (a "billion laughs") is refused.

use std::collections::BTreeMap;

use saphyr_parser::ScalarStyle;
use serde_json::{Map, Number, Value};

use crate::yaml::{Node, NodeId, ParseError, Positions, Tree};

/// How many nodes alias expansion may add to a whole stream, beyond the nodes written in it.
pub const ALIAS_BUDGET: usize = 10_000;

/// How deep documents may nest.
const MAX_DEPTH: usize = 128;

/// Why a YAML stream cannot be turned into JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not YAML (or not UTF-8).
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Aliases expand to more than [`ALIAS_BUDGET`] extra nodes (or form a cycle).
    #[error(
        "line {line}: aliases expand to more than {ALIAS_BUDGET} nodes (refused: an alias bomb?)"
    )]
    AliasBudget {
        /// 1-based line of the node being expanded when the budget ran out.
        line: usize,
    },
    /// Nesting deeper than 128 levels.
    #[error("line {line}: nested more than {MAX_DEPTH} levels deep")]
    TooDeep {
        /// 1-based line.
        line: usize,
    },
    /// A mapping key that is a mapping or a sequence (JSON keys are strings).
    #[error("line {line}: a mapping key must be a scalar")]
    ComplexKey {
        /// 1-based line.
        line: usize,
    },
    /// The same key twice in one mapping (Kubernetes refuses these too).
    #[error("line {line}: duplicate key {key:?}")]
    DuplicateKey {
        /// 1-based line of the second occurrence.
        line: usize,
        /// The key.
        key: String,
    },
}

impl JsonError {
    /// 1-based line of the error.
    pub fn line(&self) -> usize {
        match self {
            JsonError::Parse(e) => e.line(),
            JsonError::AliasBudget { line }
            | JsonError::TooDeep { line }
            | JsonError::ComplexKey { line }
            | JsonError::DuplicateKey { line, .. } => *line,
        }
    }
}

/// One YAML document as JSON, with where its nodes are.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonDocument {
    /// The document.
    pub value: Value,
    /// 1-based line where the document's content starts.
    pub line: usize,
    /// The 1-based line of every node, by JSON pointer (RFC 6901: `/spec/containers/0/image`;
    /// `""` is the document). A mapping value is at its key's line, a sequence item where it
    /// starts.
    pub lines: BTreeMap<String, usize>,
}

impl JsonDocument {
    /// The line of the node at `pointer`, or of its nearest ancestor that exists (so a pointer
    /// to a field that is absent still lands on the object that lacks it).
    pub fn line_of(&self, pointer: &str) -> usize {
        let mut p = pointer;
        loop {
            if let Some(&l) = self.lines.get(p) {
                return l;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return self.line,
            }
        }
    }
}

/// Escapes one JSON pointer reference token (`~` as `~0`, `/` as `~1`).
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Every non-empty (not null) document of a YAML (or JSON) stream, as JSON with node lines. See the module
/// documentation for how scalars are typed.
pub fn to_json(source: &[u8]) -> Result<Vec<JsonDocument>, JsonError> {
    let src = crate::as_str(source)?;
    let pos = Positions::new(src);
    let tree = Tree::parse(src, &pos)?;
    let mut c = Converter {
        tree: &tree,
        pos: &pos,
        budget: tree.nodes.len() + ALIAS_BUDGET,
        visited: 0,
    };
    let mut docs = Vec::with_capacity(tree.docs.len());
    for &doc in &tree.docs {
        let mut lines = BTreeMap::new();
        let line = c.line(doc);
        let mut pointer = String::new();
        lines.insert(String::new(), line);
        let value = c.node(doc, &mut pointer, &mut lines, 0)?;
        if value.is_null() {
            // An empty document (`---` alone, or only comments).
            continue;
        }
        docs.push(JsonDocument { value, line, lines });
    }
    Ok(docs)
}

struct Converter<'a> {
    tree: &'a Tree,
    pos: &'a Positions<'a>,
    budget: usize,
    visited: usize,
}

impl Converter<'_> {
    fn line(&self, id: NodeId) -> usize {
        self.pos.line_col(self.pos.byte(self.tree.start(id))).0
    }

    fn node(
        &mut self,
        id: NodeId,
        pointer: &mut String,
        lines: &mut BTreeMap<String, usize>,
        depth: usize,
    ) -> Result<Value, JsonError> {
        self.visited += 1;
        if self.visited > self.budget {
            return Err(JsonError::AliasBudget {
                line: self.line(id),
            });
        }
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep {
                line: self.line(id),
            });
        }
        match &self.tree.nodes[id] {
            Node::Scalar {
                value,
                style,
                string_tag,
                ..
            } => Ok(if *style == ScalarStyle::Plain && !string_tag {
                core_schema(value)
            } else {
                Value::String(value.clone())
            }),
            Node::Seq { items, .. } => {
                let mut out = Vec::with_capacity(items.len());
                for (i, &item) in items.iter().enumerate() {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&i.to_string());
                    lines.insert(pointer.clone(), self.line(item));
                    out.push(self.node(item, pointer, lines, depth + 1)?);
                    pointer.truncate(len);
                }
                Ok(Value::Array(out))
            }
            Node::Map { .. } => {
                let mut map = Map::new();
                self.map_into(id, &mut map, pointer, lines, depth, false)?;
                Ok(Value::Object(map))
            }
        }
    }

    /// Adds the entries of mapping `id` to `map`: explicit entries first (a repeated one is an
    /// error), then the merged mappings' entries that are not there yet (`merged` is true when
    /// `id` itself is being merged, where existing keys win silently).
    fn map_into(
        &mut self,
        id: NodeId,
        map: &mut Map<String, Value>,
        pointer: &mut String,
        lines: &mut BTreeMap<String, usize>,
        depth: usize,
        merged: bool,
    ) -> Result<(), JsonError> {
        let Node::Map { entries, .. } = &self.tree.nodes[id] else {
            return Ok(());
        };
        let mut merges = Vec::new();
        for &(k, v) in entries {
            let key = match &self.tree.nodes[k] {
                Node::Scalar {
                    value,
                    style: ScalarStyle::Plain,
                    string_tag: false,
                    ..
                } if value == "<<" => {
                    merges.push(v);
                    continue;
                }
                Node::Scalar { value, .. } => value.clone(),
                _ => return Err(JsonError::ComplexKey { line: self.line(k) }),
            };
            if map.contains_key(&key) {
                if merged {
                    continue;
                }
                return Err(JsonError::DuplicateKey {
                    line: self.line(k),
                    key,
                });
            }
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&pointer_token(&key));
            lines.insert(pointer.clone(), self.line(k));
            let value = self.node(v, pointer, lines, depth + 1)?;
            pointer.truncate(len);
            map.insert(key, value);
        }
        for m in merges {
            let sources: Vec<NodeId> = match &self.tree.nodes[m] {
                Node::Map { .. } => vec![m],
                Node::Seq { items, .. } => items.clone(),
                Node::Scalar { .. } => Vec::new(),
            };
            for s in sources {
                if depth > MAX_DEPTH {
                    return Err(JsonError::TooDeep { line: self.line(s) });
                }
                self.visited += 1;
                if self.visited > self.budget {
                    return Err(JsonError::AliasBudget { line: self.line(s) });
                }
                self.map_into(s, map, pointer, lines, depth + 1, true)?;
            }
        }
        Ok(())
    }
}

/// A plain scalar as the YAML 1.2 core schema types it.
fn core_schema(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let (neg, digits) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let int = |radix: u32, d: &str| -> Option<Value> {
        let v = i128::from_str_radix(d, radix).ok()?;
        let v = if neg { -v } else { v };
        if let Ok(i) = i64::try_from(v) {
            Some(Value::Number(i.into()))
        } else if let Ok(u) = u64::try_from(v) {
            Some(Value::Number(u.into()))
        } else {
            Number::from_f64(v as f64).map(Value::Number)
        }
    };
    let all = |d: &str, f: fn(&u8) -> bool| !d.is_empty() && d.as_bytes().iter().all(f);
    if s.len() == digits.len() {
        // Octal and hexadecimal take no sign in the core schema.
        if let Some(o) = s
            .strip_prefix("0o")
            .filter(|d| all(d, |b| (b'0'..=b'7').contains(b)))
        {
            return int(8, o).unwrap_or_else(|| Value::String(s.to_owned()));
        }
        if let Some(h) = s
            .strip_prefix("0x")
            .filter(|d| all(d, u8::is_ascii_hexdigit))
        {
            return int(16, h).unwrap_or_else(|| Value::String(s.to_owned()));
        }
    }
    if all(digits, u8::is_ascii_digit) {
        return int(10, digits).unwrap_or_else(|| Value::String(s.to_owned()));
    }
    if is_core_float(digits)
        && let Ok(f) = s.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(s.to_owned())
}

/// `( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`, the sign already removed.
fn is_core_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let whole = digits(&mut i);
    let mut frac = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        frac = digits(&mut i);
    } else if whole == 0 {
        return false;
    }
    if whole == 0 && frac == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(src: &str) -> JsonDocument {
        let mut d = to_json(src.as_bytes()).unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        d.remove(0)
    }

    #[test]
    fn core_schema_scalars() {
        let d = one("a: [true, True, FALSE, yes, on, no, off, y]\n\
             b: [null, ~, Null]\n\
             f:\n\
             c: [1, -2, +3, 0o17, 0x1F, 1.5, .5, -1e3, 1., 0777, 99999999999999999999]\n\
             d: ['1', \"true\", !!str 12, ! 13, .inf, .nan, 1_000, 0x, 1e, v1.2, 1.2.3]\n\
             e: |\n  12\n");
        assert_eq!(
            d.value,
            json!({
                "a": [true, true, false, "yes", "on", "no", "off", "y"],
                "b": [null, null, null],
                "f": null,
                "c": [1, -2, 3, 15, 31, 1.5, 0.5, -1000.0, 1.0, 777, 1e20],
                "d": ["1", "true", "12", "13", ".inf", ".nan", "1_000", "0x", "1e", "v1.2", "1.2.3"],
                "e": "12\n",
            })
        );
    }

    #[test]
    fn lines_merge_keys_and_documents() {
        let src = "# c\nbase: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n  z:\n    - a\n    - k: v\n---\n---\nkind: Pod\n";
        let docs = to_json(src.as_bytes()).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0].value,
            json!({"base": {"x": 1, "y": 2}, "m": {"y": 3, "z": ["a", {"k": "v"}], "x": 1}})
        );
        assert_eq!(docs[0].line, 2);
        assert_eq!(docs[0].line_of("/m/y"), 5);
        assert_eq!(docs[0].line_of("/m/z/1/k"), 8);
        assert_eq!(docs[0].line_of("/m/z/1/absent/deeper"), 8);
        assert_eq!(docs[0].line_of("/m/x"), 2);
        assert_eq!(docs[1].line, 11);
        assert_eq!(docs[1].line_of("/kind"), 11);
        // Pointer tokens are escaped.
        let d = one("metadata:\n  annotations:\n    a/b~c: x\n");
        assert_eq!(d.line_of("/metadata/annotations/a~1b~0c"), 3);
    }

    #[test]
    fn json_input_and_errors() {
        let d = one("{\"kind\": \"Pod\",\n \"spec\": {\"n\": 1.5, \"s\": \"x\"}}\n");
        assert_eq!(
            d.value,
            json!({"kind": "Pod", "spec": {"n": 1.5, "s": "x"}})
        );
        assert_eq!(d.line_of("/spec/s"), 2);
        let e = to_json(b"a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(
            e,
            JsonError::DuplicateKey {
                line: 3,
                key: "a".into()
            }
        );
        let e = to_json(b"a:\n  ? [x]\n  : 1\n").unwrap_err();
        assert!(matches!(e, JsonError::ComplexKey { line: 2 }), "{e:?}");
        assert!(matches!(
            to_json(b"a: [\n").unwrap_err(),
            JsonError::Parse(_)
        ));
    }

    #[test]
    fn alias_bombs_and_cycles_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = to_json(bomb.as_bytes()).unwrap_err();
        assert!(matches!(e, JsonError::AliasBudget { .. }), "{e:?}");
        assert!(e.to_string().contains("aliases expand"), "{e}");
        // Modest reuse is fine.
        let ok = "c: &c {image: a:1}\nl: [*c, *c, *c]\n";
        assert_eq!(one(ok).value["l"][2]["image"], "a:1");
        // A self-referencing anchor.
        assert!(to_json(b"a: &a [*a]\n").is_err());
    }
}
