//! A read-only YAML node tree with source positions, built from `saphyr-parser` events.
//!
//! The tree is only read, never written back: the rewriter splices new text into the original
//! bytes at the positions found here. Aliases are resolved to the node they name (so a container
//! reached through `*anchor` is the anchored node itself, with the anchored node's position), and
//! merge keys (`<<: *base`) are honoured by [`Tree::get`].

use std::collections::HashMap;
use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// Index of a node in [`Tree::nodes`].
pub(crate) type NodeId = usize;

/// How deep merge keys and nested `List`s are followed (a guard against alias cycles).
const MAX_DEPTH: usize = 16;

/// A YAML syntax error, with its position in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input is not UTF-8 (Kubernetes manifests are).
    #[error("line {line}: the file is not UTF-8 text")]
    NotUtf8 {
        /// 1-based line of the first invalid byte.
        line: usize,
    },
    /// The YAML parser refused the input.
    #[error("line {line} column {column}: invalid YAML: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The parser's message.
        message: String,
    },
}

impl ParseError {
    /// 1-based line of the error.
    pub fn line(&self) -> usize {
        match self {
            ParseError::NotUtf8 { line } | ParseError::Syntax { line, .. } => *line,
        }
    }
}

/// One node of the tree.
#[derive(Debug)]
pub(crate) enum Node {
    /// A scalar: decoded value, style, and the parser's start position (character index) of the
    /// node, which may point at properties (`&anchor`, `!tag`) before the scalar itself.
    Scalar {
        value: String,
        style: ScalarStyle,
        start: usize,
        /// True when the scalar carries a tag that makes it a string whatever its text
        /// (`!!str`, or the non-specific `!`).
        string_tag: bool,
    },
    /// A sequence and its items.
    Seq { items: Vec<NodeId>, start: usize },
    /// A mapping and its entries in source order.
    Map {
        entries: Vec<(NodeId, NodeId)>,
        start: usize,
    },
}

/// The documents of a YAML stream.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    pub(crate) nodes: Vec<Node>,
    /// Root node of each non-empty document.
    pub(crate) docs: Vec<NodeId>,
}

enum Frame {
    Seq(NodeId, Vec<NodeId>),
    Map(NodeId, Vec<NodeId>),
}

impl Tree {
    /// Parses a whole YAML stream.
    pub(crate) fn parse(src: &str, pos: &Positions<'_>) -> Result<Tree, ParseError> {
        let mut tree = Tree::default();
        let mut anchors: HashMap<usize, NodeId> = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(src) {
            let (event, span) = item.map_err(|e| {
                let byte = pos.byte(e.marker().index());
                let (line, column) = pos.line_col(byte);
                ParseError::Syntax {
                    line,
                    column,
                    message: e.info().to_owned(),
                }
            })?;
            let start = span.start.index();
            let done = match event {
                Event::Scalar(value, style, anchor, tag) => {
                    let string_tag = tag.is_some_and(|t| {
                        (t.is_yaml_core_schema() && t.suffix == "str")
                            || (t.handle == "!" && t.suffix.is_empty())
                            || (t.handle.is_empty() && t.suffix == "!")
                    });
                    let id = tree.push(Node::Scalar {
                        value: value.into_owned(),
                        style,
                        start,
                        string_tag,
                    });
                    if anchor != 0 {
                        anchors.insert(anchor, id);
                    }
                    Some(id)
                }
                Event::Alias(anchor) => {
                    // The parser refuses unknown aliases, so the anchor is always there.
                    anchors.get(&anchor).copied()
                }
                Event::SequenceStart(anchor, _) => {
                    let id = tree.push(Node::Seq {
                        items: Vec::new(),
                        start,
                    });
                    if anchor != 0 {
                        anchors.insert(anchor, id);
                    }
                    stack.push(Frame::Seq(id, Vec::new()));
                    None
                }
                Event::MappingStart(anchor, _) => {
                    let id = tree.push(Node::Map {
                        entries: Vec::new(),
                        start,
                    });
                    if anchor != 0 {
                        anchors.insert(anchor, id);
                    }
                    stack.push(Frame::Map(id, Vec::new()));
                    None
                }
                Event::SequenceEnd => match stack.pop() {
                    Some(Frame::Seq(id, children)) => {
                        if let Node::Seq { items, .. } = &mut tree.nodes[id] {
                            *items = children;
                        }
                        Some(id)
                    }
                    _ => None,
                },
                Event::MappingEnd => match stack.pop() {
                    Some(Frame::Map(id, children)) => {
                        let pairs = children.chunks_exact(2).map(|c| (c[0], c[1])).collect();
                        if let Node::Map { entries, .. } = &mut tree.nodes[id] {
                            *entries = pairs;
                        }
                        Some(id)
                    }
                    _ => None,
                },
                Event::DocumentStart(_)
                | Event::DocumentEnd
                | Event::StreamStart
                | Event::StreamEnd
                | Event::Nothing => None,
            };
            if let Some(id) = done {
                match stack.last_mut() {
                    Some(Frame::Seq(_, children) | Frame::Map(_, children)) => children.push(id),
                    None => tree.docs.push(id),
                }
            }
        }
        Ok(tree)
    }

    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The node's start position (character index).
    pub(crate) fn start(&self, id: NodeId) -> usize {
        match &self.nodes[id] {
            Node::Scalar { start, .. } | Node::Seq { start, .. } | Node::Map { start, .. } => {
                *start
            }
        }
    }

    /// The scalar's value, if the node is a scalar.
    pub(crate) fn str(&self, id: NodeId) -> Option<&str> {
        match &self.nodes[id] {
            Node::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The sequence's items (empty for other nodes).
    pub(crate) fn items(&self, id: NodeId) -> &[NodeId] {
        match &self.nodes[id] {
            Node::Seq { items, .. } => items,
            _ => &[],
        }
    }

    /// True for mappings.
    pub(crate) fn is_map(&self, id: NodeId) -> bool {
        matches!(self.nodes[id], Node::Map { .. })
    }

    /// Every value of `key` in the mapping `map`: the explicit entries (all of them, should the
    /// key be repeated), or else the value from the first merged mapping (`<<: *a` or
    /// `<<: [*a, *b]`) that has it, as YAML 1.1 merge keys (which Kubernetes honours) define.
    pub(crate) fn get_all(&self, map: NodeId, key: &str) -> Vec<NodeId> {
        let mut out = Vec::new();
        self.get_into(map, key, 0, &mut out);
        out
    }

    /// The first value of `key` in `map` (see [`Tree::get_all`]).
    pub(crate) fn get(&self, map: NodeId, key: &str) -> Option<NodeId> {
        self.get_all(map, key).into_iter().next()
    }

    /// A string value of `key` in `map`.
    pub(crate) fn get_str(&self, map: NodeId, key: &str) -> Option<&str> {
        self.get(map, key).and_then(|v| self.str(v))
    }

    /// Follows `path` of keys from `map`.
    pub(crate) fn path(&self, map: NodeId, path: &[&str]) -> Option<NodeId> {
        path.iter().try_fold(map, |node, key| self.get(node, key))
    }

    fn get_into(&self, map: NodeId, key: &str, depth: usize, out: &mut Vec<NodeId>) {
        let Node::Map { entries, .. } = &self.nodes[map] else {
            return;
        };
        let mut merges = Vec::new();
        for &(k, v) in entries {
            match &self.nodes[k] {
                Node::Scalar { value, .. } if value == key => out.push(v),
                Node::Scalar {
                    value,
                    style: ScalarStyle::Plain,
                    ..
                } if value == "<<" => merges.push(v),
                _ => {}
            }
        }
        if !out.is_empty() || depth >= MAX_DEPTH {
            return;
        }
        for m in merges {
            let sources: Vec<NodeId> = match &self.nodes[m] {
                Node::Map { .. } => vec![m],
                Node::Seq { items, .. } => items.clone(),
                Node::Scalar { .. } => Vec::new(),
            };
            for s in sources {
                self.get_into(s, key, depth + 1, out);
                if !out.is_empty() {
                    return;
                }
            }
        }
    }
}

/// Maps the parser's character positions to byte offsets, lines and columns of the source.
pub(crate) struct Positions<'a> {
    src: &'a str,
    /// Byte offset of each character, or `None` for ASCII sources (where they are equal).
    offsets: Option<Vec<usize>>,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

impl<'a> Positions<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        let offsets = (!src.is_ascii()).then(|| src.char_indices().map(|(i, _)| i).collect());
        let mut line_starts = vec![0];
        line_starts.extend(
            src.bytes()
                .enumerate()
                .filter_map(|(i, b)| (b == b'\n').then_some(i + 1)),
        );
        Positions {
            src,
            offsets,
            line_starts,
        }
    }

    /// Byte offset of the character at `index` (the end of the source past the last one).
    pub(crate) fn byte(&self, index: usize) -> usize {
        match &self.offsets {
            None => index.min(self.src.len()),
            Some(o) => o.get(index).copied().unwrap_or(self.src.len()),
        }
    }

    /// 1-based line and column (in characters, a leading byte-order mark not counted) of a byte
    /// offset.
    pub(crate) fn line_col(&self, byte: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= byte);
        let line_start = self.line_starts[line - 1];
        let text = self.src.get(line_start..byte).unwrap_or("");
        let column = text.chars().filter(|&c| c != '\u{feff}').count() + 1;
        (line, column)
    }

    /// Byte range of the line holding `byte`, with its line break.
    pub(crate) fn line_range(&self, byte: usize) -> Range<usize> {
        let line = self.line_starts.partition_point(|&s| s <= byte);
        let start = self.line_starts[line - 1];
        let end = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.src.len());
        start..end
    }
}

/// How a scalar is written, as far as the rewriter is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// `image: repo:tag`
    Plain,
    /// `image: 'repo:tag'`
    Single,
    /// `image: "repo:tag"`
    Double,
    /// `image: >-` or `image: |-`, the reference alone on the next line (rewritten in place,
    /// the header kept; a block scalar over several lines is not).
    Block,
}

impl From<ScalarStyle> for Quoting {
    fn from(s: ScalarStyle) -> Self {
        match s {
            ScalarStyle::Plain => Quoting::Plain,
            ScalarStyle::SingleQuoted => Quoting::Single,
            ScalarStyle::DoubleQuoted => Quoting::Double,
            ScalarStyle::Literal | ScalarStyle::Folded => Quoting::Block,
        }
    }
}

/// Finds the exact bytes of a scalar token (quotes included) that starts at or after `from`,
/// past any node properties (`&anchor`, `!tag`) and the white space or comments between them.
///
/// For a plain scalar the token must spell `value` literally (true of every single-line plain
/// scalar); quoted scalars end at their closing quote. Returns `None` when the token cannot be
/// found with certainty (block scalars, multi-line plain scalars), and the caller then leaves
/// the text alone.
pub(crate) fn locate_scalar(
    src: &str,
    from: usize,
    quoting: Quoting,
    value: &str,
) -> Option<Range<usize>> {
    let b = src.as_bytes();
    let mut i = from;
    loop {
        match b.get(i)? {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'!' if b.get(i + 1) == Some(&b'<') => {
                // Verbatim tag `!<...>`.
                i += src[i..].find('>')? + 1;
            }
            b'&' | b'!' => {
                while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
                    i += 1;
                }
            }
            _ => break,
        }
    }
    match quoting {
        Quoting::Plain => {
            (!value.is_empty() && src[i..].starts_with(value)).then(|| i..i + value.len())
        }
        Quoting::Single => {
            if b[i] != b'\'' {
                return None;
            }
            let mut j = i + 1;
            loop {
                match b.get(j)? {
                    b'\'' if b.get(j + 1) == Some(&b'\'') => j += 2,
                    b'\'' => return Some(i..j + 1),
                    _ => j += 1,
                }
            }
        }
        Quoting::Double => {
            if b[i] != b'"' {
                return None;
            }
            let mut j = i + 1;
            loop {
                match b.get(j)? {
                    b'\\' => j += 2,
                    b'"' => return Some(i..j + 1),
                    _ => j += 1,
                }
            }
        }
        Quoting::Block => locate_block(src, i, value),
    }
}

/// The content of a one-line block scalar (`image: >-` or `|-`, then the text on the next
/// line). `at` is where the parser starts the node: its header (`|`, `>`) or its first content
/// line. The content must be one line that spells `value` exactly, with only indentation before
/// it and only white space after it; any other shape (text folded or continued over several
/// lines, kept line breaks) gives `None`.
fn locate_block(src: &str, mut at: usize, value: &str) -> Option<Range<usize>> {
    let b = src.as_bytes();
    if value.is_empty() || value.contains(['\n', '\r']) || value.starts_with([' ', '\t']) {
        return None;
    }
    if matches!(b.get(at)?, b'|' | b'>') {
        // Past the header line and the indentation of the next.
        at += src[at..].find('\n')? + 1;
        while b.get(at) == Some(&b' ') {
            at += 1;
        }
    }
    let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
    if !src[line_start..at].bytes().all(|c| c == b' ') {
        return None;
    }
    let rest = src[at..].strip_prefix(value)?;
    let line_rest = &rest[..rest.find('\n').unwrap_or(rest.len())];
    line_rest
        .trim_end_matches(['\r', ' ', '\t'])
        .is_empty()
        .then(|| at..at + value.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_tokens(src: &str) -> Vec<(String, String)> {
        let pos = Positions::new(src);
        let tree = Tree::parse(src, &pos).unwrap();
        let mut out = Vec::new();
        for n in &tree.nodes {
            if let Node::Scalar {
                value,
                style,
                start,
                ..
            } = n
            {
                let at = pos.byte(*start);
                if let Some(r) = locate_scalar(src, at, (*style).into(), value) {
                    out.push((value.clone(), src[r].to_owned()));
                }
            }
        }
        out
    }

    #[test]
    fn tokens_exclude_properties_comments_and_trailing_space() {
        let src = "\u{feff}a: &x !!str 'q:1'  # c\r\nb: \"é:2\" # d\nc: {k: 'v', l: \"w\" }\nd: !<tag:x> p\n";
        let t = scalar_tokens(src);
        assert!(t.contains(&("q:1".into(), "'q:1'".into())), "{t:?}");
        assert!(t.contains(&("é:2".into(), "\"é:2\"".into())), "{t:?}");
        assert!(t.contains(&("v".into(), "'v'".into())), "{t:?}");
        assert!(t.contains(&("w".into(), "\"w\"".into())), "{t:?}");
        assert!(t.contains(&("p".into(), "p".into())), "{t:?}");
    }

    #[test]
    fn quoted_scalars_with_escapes_end_at_the_real_quote() {
        let t = scalar_tokens("a: 'it''s'\nb: \"x\\\"y\"\n");
        assert!(t.contains(&("it's".into(), "'it''s'".into())), "{t:?}");
        assert!(t.contains(&("x\"y".into(), "\"x\\\"y\"".into())), "{t:?}");
    }

    #[test]
    fn aliases_and_merges() {
        let src = "base: &b {image: a, name: n}\nx:\n  <<: *b\n  name: m\ny: *b\n";
        let pos = Positions::new(src);
        let tree = Tree::parse(src, &pos).unwrap();
        let root = tree.docs[0];
        let x = tree.get(root, "x").unwrap();
        assert_eq!(tree.get_str(x, "image"), Some("a"));
        assert_eq!(tree.get_str(x, "name"), Some("m"));
        let y = tree.get(root, "y").unwrap();
        assert_eq!(y, tree.get(root, "base").unwrap());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let src = "a: b\nc: [d\n";
        let e = Tree::parse(src, &Positions::new(src)).unwrap_err();
        assert!(matches!(e, ParseError::Syntax { .. }), "{e}");
        assert!(e.line() >= 2, "{e}");
    }

    #[test]
    fn line_and_column() {
        let src = "\u{feff}ab\r\nçd: e\n";
        let p = Positions::new(src);
        assert_eq!(p.line_col(3), (1, 1));
        let e = src.find('e').unwrap();
        assert_eq!(p.line_col(e), (2, 5));
        assert_eq!(&src[p.line_range(e)], "çd: e\n");
    }
}
