//! A YAML document as a tree of nodes that remember where they were written.
//!
//! Takes the text of one file, gives a [`Node`] tree whose every node carries its
//! `line:column`, so that every problem in a file can be reported at once and pointed at
//! precisely. No I/O.
//!
//! Why not serde: serde's data model drops positions and stops at the first error, and the
//! contract asks for all problems at once with `file:line:column`. The tokenizer is
//! `yaml-rust2`'s event parser; this module builds the tree and enforces the limits that
//! keep hostile input harmless: nesting depth, total nodes (an alias bomb expands each alias
//! into a copy, so the node budget bounds its memory), one document per file.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deeper nesting than this is refused: topology files are three or four levels deep.
pub const MAX_DEPTH: usize = 64;
/// Nodes after alias expansion; a 10,000-host topology needs about 100,000.
pub const MAX_NODES: usize = 1_000_000;

/// A position in a file, 1-based like editors and compilers print it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    fn from_marker(m: &Marker) -> Self {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Pos {
            line: m.line() as u32,
            column: m.col() as u32 + 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A scalar's text; `plain` is false for quoted and block scalars, which are always
    /// strings (`"true"` is a string, `true` a boolean).
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in file order; duplicate keys are kept so the decoder can report them.
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
    /// Number of nodes in this subtree, itself included (for the alias budget).
    size: usize,
}

impl Node {
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// A plain scalar that YAML 1.2's core schema reads as null (`~`, `null`, or nothing).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, plain: true }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What this node is, in words, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar { .. } if self.is_null() => "nothing (null)",
            Kind::Scalar { .. } => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// Why a document could not be turned into a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    pub pos: Pos,
    pub kind: LoadErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadErrorKind {
    Syntax,
    /// Too deep, or too many nodes once aliases are expanded.
    Limit,
    /// More than one `---` document.
    MultipleDocuments,
    /// The file holds no document at all.
    Empty,
}

/// Parses `text` into one document tree.
pub fn load(text: &str) -> Result<Node, LoadError> {
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::default();
    let mut documents = 0usize;
    loop {
        let (event, marker) = parser.next_token().map_err(|e| LoadError {
            pos: Pos::from_marker(e.marker()),
            // yaml-rust2 has a flow nesting limit of its own.
            kind: if e.info().contains("recursion limit") {
                LoadErrorKind::Limit
            } else {
                LoadErrorKind::Syntax
            },
            message: e.info().to_string(),
        })?;
        let pos = Pos::from_marker(&marker);
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(LoadError {
                        pos,
                        kind: LoadErrorKind::MultipleDocuments,
                        message: "a second YAML document (`---`); a file declares one cluster"
                            .into(),
                    });
                }
            }
            other => builder.event(other, pos)?,
        }
    }
    builder.root.ok_or(LoadError {
        pos: Pos { line: 1, column: 1 },
        kind: LoadErrorKind::Empty,
        message: "the file is empty".into(),
    })
}

enum Open {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    root: Option<Node>,
}

impl Builder {
    fn event(&mut self, event: Event, pos: Pos) -> Result<(), LoadError> {
        match event {
            Event::Scalar(value, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                let node = self.leaf(pos, Kind::Scalar { value, plain })?;
                self.finish(node, anchor)
            }
            Event::SequenceStart(anchor, _) => self.open(Open::Seq {
                pos,
                anchor,
                items: vec![],
            }),
            Event::MappingStart(anchor, _) => self.open(Open::Map {
                pos,
                anchor,
                entries: vec![],
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    // A block collection's start event is only emitted once the parser
                    // has seen its first `key:` or `- `, so its marker lies after the
                    // first entry; the collection starts where its first entry does.
                    Some(Open::Seq { pos, anchor, items }) => {
                        let pos = items.first().map_or(pos, |n| n.pos.min(pos));
                        let size = 1 + items.iter().map(|n| n.size).sum::<usize>();
                        (
                            Node {
                                pos,
                                kind: Kind::Seq(items),
                                size,
                            },
                            anchor,
                        )
                    }
                    Some(Open::Map {
                        pos,
                        anchor,
                        entries,
                        ..
                    }) => {
                        let pos = entries.first().map_or(pos, |(k, _)| k.pos.min(pos));
                        let size = 1 + entries.iter().map(|(k, v)| k.size + v.size).sum::<usize>();
                        (
                            Node {
                                pos,
                                kind: Kind::Map(entries),
                                size,
                            },
                            anchor,
                        )
                    }
                    None => return Ok(()),
                };
                self.finish(node, anchor)
            }
            Event::Alias(id) => {
                let Some(size) = self.anchors.get(&id).map(|n| n.size) else {
                    return Err(LoadError {
                        pos,
                        kind: LoadErrorKind::Syntax,
                        message: "alias to an unknown anchor".into(),
                    });
                };
                // Expanding an alias copies its subtree: charge the whole copy to the
                // budget before making it, so a billion-laughs document stops here.
                self.charge(size, pos)?;
                let mut node = self.anchors[&id].clone();
                node.pos = pos;
                self.finish(node, 0)
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd => Ok(()),
            Event::DocumentStart | Event::DocumentEnd => Ok(()),
        }
    }

    fn charge(&mut self, nodes: usize, pos: Pos) -> Result<(), LoadError> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > MAX_NODES {
            return Err(LoadError {
                pos,
                kind: LoadErrorKind::Limit,
                message: format!(
                    "the document expands to more than {MAX_NODES} nodes \
                     (aliases are copied where they are used)"
                ),
            });
        }
        Ok(())
    }

    fn leaf(&mut self, pos: Pos, kind: Kind) -> Result<Node, LoadError> {
        self.charge(1, pos)?;
        Ok(Node { pos, kind, size: 1 })
    }

    fn open(&mut self, open: Open) -> Result<(), LoadError> {
        let pos = match &open {
            Open::Seq { pos, .. } | Open::Map { pos, .. } => *pos,
        };
        self.charge(1, pos)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(LoadError {
                pos,
                kind: LoadErrorKind::Limit,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        self.stack.push(open);
        Ok(())
    }

    /// Attaches a completed node to its parent (or makes it the root).
    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), LoadError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_keys(node: &Node) -> Vec<(&str, Pos)> {
        match &node.kind {
            Kind::Map(entries) => entries
                .iter()
                .map(|(k, _)| (k.scalar().unwrap(), k.pos))
                .collect(),
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let root = load("a: 1\nhosts:\n  db1: { address: x }\n").unwrap();
        let keys = map_keys(&root);
        assert_eq!(keys[0], ("a", Pos { line: 1, column: 1 }));
        assert_eq!(keys[1], ("hosts", Pos { line: 2, column: 1 }));
        let Kind::Map(entries) = &root.kind else {
            panic!()
        };
        let inner = map_keys(&entries[1].1);
        assert_eq!(inner[0], ("db1", Pos { line: 3, column: 3 }));
    }

    #[test]
    fn duplicate_keys_are_kept_for_the_decoder() {
        let root = load("a: 1\na: 2\n").unwrap();
        assert_eq!(map_keys(&root).len(), 2);
    }

    #[test]
    fn quoted_scalars_are_not_plain() {
        let root = load("a: \"true\"\nb: true\n").unwrap();
        let Kind::Map(entries) = &root.kind else {
            panic!()
        };
        assert_eq!(
            entries[0].1.kind,
            Kind::Scalar {
                value: "true".into(),
                plain: false
            }
        );
        assert_eq!(
            entries[1].1.kind,
            Kind::Scalar {
                value: "true".into(),
                plain: true
            }
        );
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, LoadErrorKind)] = &[
            ("", LoadErrorKind::Empty),
            ("# only a comment\n", LoadErrorKind::Empty),
            ("a: 1\n---\nb: 2\n", LoadErrorKind::MultipleDocuments),
            ("a: [1, 2\n", LoadErrorKind::Syntax),
            ("a: *nowhere\n", LoadErrorKind::Syntax),
            ("\t- x: y\n  z", LoadErrorKind::Syntax),
        ];
        for (text, kind) in cases {
            let err = load(text).unwrap_err();
            assert_eq!(err.kind, *kind, "{text:?}: {err:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let text = "[".repeat(100_000);
        let err = load(&text).unwrap_err();
        assert!(
            matches!(err.kind, LoadErrorKind::Limit | LoadErrorKind::Syntax),
            "{err:?}"
        );
    }

    #[test]
    fn alias_bomb_is_refused_within_budget() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = load(&text).unwrap_err();
        assert_eq!(err.kind, LoadErrorKind::Limit);
    }

    #[test]
    fn small_aliases_still_work() {
        let root = load("base: &b { dc: east }\nother: *b\n").unwrap();
        let Kind::Map(entries) = &root.kind else {
            panic!()
        };
        assert_eq!(entries[0].1.kind, entries[1].1.kind);
        assert_eq!(entries[1].1.pos.line, 2);
    }
}
