//! Typed reading of a positioned YAML tree, collecting every problem instead of stopping.
//!
//! Takes a [`Node`] tree, gives typed values plus [`Diagnostic`]s for unknown, duplicate and
//! missing keys, wrong types and malformed values. No I/O. The topology and policy readers
//! are written with these helpers so that both report problems the same way.

use std::path::Path;
use std::time::Duration;

use super::diag::{Code, Diagnostic, did_you_mean};
use super::yaml::{Kind, Node, Pos};

/// A value with the position it was written at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

pub struct Decoder<'f> {
    pub file: &'f Path,
    pub diags: Vec<Diagnostic>,
}

/// The entries of one mapping, checked for duplicates and unknown keys.
pub struct Fields<'n> {
    pub path: String,
    pub pos: Pos,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
    }

    /// Every entry as (key, key node, value node), in file order.
    pub fn entries(&self) -> impl Iterator<Item = (&'n str, &'n Node, &'n Node)> + '_ {
        self.entries.iter().copied()
    }

    pub fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

impl<'f> Decoder<'f> {
    pub fn new(file: &'f Path) -> Self {
        Decoder {
            file,
            diags: Vec::new(),
        }
    }

    pub fn report(
        &mut self,
        code: Code,
        pos: Pos,
        subject: &str,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        let mut d = Diagnostic::new(code, self.file, pos, message);
        if !subject.is_empty() {
            d = d.subject(subject);
        }
        self.diags.push(d);
        self.diags.last_mut().expect("just pushed")
    }

    /// Reads a mapping whose keys may only be `allowed` (`None`: any key, e.g. host ids).
    /// Reports a non-mapping, non-string and duplicate keys, and unknown keys with a
    /// "did you mean" hint; duplicates keep their first value.
    pub fn map<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        allowed: Option<&[&str]>,
    ) -> Option<Fields<'n>> {
        let Kind::Map(raw) = &node.kind else {
            self.report(
                Code::WrongType,
                node.pos,
                path,
                format!("expected a mapping, found {}", node.describe()),
            );
            return None;
        };
        let mut fields = Fields {
            path: path.to_string(),
            pos: node.pos,
            entries: Vec::with_capacity(raw.len()),
        };
        for (key, value) in raw {
            let name = match &key.kind {
                Kind::Scalar { value, .. } if !key.is_null() => value.as_str(),
                _ => {
                    self.report(
                        Code::WrongType,
                        key.pos,
                        path,
                        format!("a key must be a name, found {}", key.describe()),
                    );
                    continue;
                }
            };
            let key_path = fields.child_path(name);
            if let Some((_, first, _)) = fields.entries.iter().find(|(k, _, _)| *k == name) {
                let line = first.pos.line;
                self.report(
                    Code::DuplicateKey,
                    key.pos,
                    &key_path,
                    format!("`{name}` is given twice (first on line {line})"),
                )
                .hint = Some(
                    "remove one of them; YAML keeps only one and which one is parser-dependent"
                        .into(),
                );
                continue;
            }
            if let Some(allowed) = allowed
                && !allowed.contains(&name)
            {
                let hint = match did_you_mean(name, allowed.iter().copied()) {
                    Some(m) => format!("did you mean `{m}`? known keys: {}", allowed.join(", ")),
                    None => format!("known keys: {}", allowed.join(", ")),
                };
                self.report(
                    Code::UnknownKey,
                    key.pos,
                    &key_path,
                    format!("unknown key `{name}`"),
                )
                .hint = Some(hint);
                continue;
            }
            fields.entries.push((name, key, value));
        }
        Some(fields)
    }

    /// A required key: reports E203 at the mapping when absent.
    pub fn required<'n>(&mut self, fields: &Fields<'n>, key: &str, what: &str) -> Option<&'n Node> {
        let node = fields.get(key);
        if node.is_none() {
            let subject = if fields.path.is_empty() {
                String::new()
            } else {
                fields.path.clone()
            };
            self.report(
                Code::MissingKey,
                fields.pos,
                &subject,
                format!("missing `{key}`"),
            )
            .hint = Some(format!("add `{key}:` ({what})"));
        }
        node
    }

    /// A string (any non-null scalar: `dc: 1` is the string "1").
    pub fn string(&mut self, node: &Node, path: &str) -> Option<Spanned<String>> {
        match &node.kind {
            Kind::Scalar { value, .. } if !node.is_null() => Some(Spanned {
                value: value.clone(),
                pos: node.pos,
            }),
            _ => {
                self.report(
                    Code::WrongType,
                    node.pos,
                    path,
                    format!("expected a string, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// `true` or `false`, unquoted. YAML 1.1's yes/no/on/off are refused with a hint,
    /// because other tools read them differently.
    pub fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.kind {
            Kind::Scalar { value, plain: true } if value == "true" => Some(true),
            Kind::Scalar { value, plain: true } if value == "false" => Some(false),
            Kind::Scalar { value, .. } => {
                self.report(
                    Code::WrongType,
                    node.pos,
                    path,
                    format!("expected true or false, found `{value}`"),
                )
                .hint = Some("write true or false, unquoted".into());
                None
            }
            _ => {
                self.report(
                    Code::WrongType,
                    node.pos,
                    path,
                    format!("expected true or false, found {}", node.describe()),
                );
                None
            }
        }
    }

    pub fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let text = self.string(node, path)?;
        match parse_duration(&text.value) {
            Ok(d) => Some(d),
            Err(why) => {
                self.report(
                    Code::BadDuration,
                    node.pos,
                    path,
                    format!("`{}` is not a duration: {why}", text.value),
                )
                .hint = Some("write a number and a unit: 500ms, 10s, 5m, 1h, 1d (or 1m30s)".into());
                None
            }
        }
    }

    /// One of `choices`, exactly as written there.
    pub fn choice<T: Copy>(&mut self, node: &Node, path: &str, choices: &[(&str, T)]) -> Option<T> {
        let text = self.string(node, path)?;
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == text.value) {
            return Some(*v);
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let hint = match did_you_mean(&text.value, names.iter().copied()) {
            Some(m) => format!("did you mean `{m}`? one of: {}", names.join(", ")),
            None => format!("one of: {}", names.join(", ")),
        };
        self.report(
            Code::BadValue,
            node.pos,
            path,
            format!("`{}` is not allowed here", text.value),
        )
        .hint = Some(hint);
        None
    }

    /// A list of strings; `null` is an empty list.
    pub fn strings(&mut self, node: &Node, path: &str) -> Vec<Spanned<String>> {
        if node.is_null() {
            return Vec::new();
        }
        let Kind::Seq(items) = &node.kind else {
            self.report(
                Code::WrongType,
                node.pos,
                path,
                format!("expected a list, found {}", node.describe()),
            )
            .hint = Some("write a YAML list: [\"...\"] or one `- ...` per line".into());
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.string(item, &format!("{path}[{i}]")))
            .collect()
    }
}

/// Parses `500ms`, `10s`, `5m`, `1h`, `2d` and sums like `1m30s`: the one duration parser
/// of files, flags and the HTTP API. A bare number is refused: seconds or milliseconds is
/// exactly the ambiguity that causes outages. Each unit appears at most once and from the
/// largest down (`1h30m`): `1h1h` or `30m1h` is a slip of the keyboard more often than a
/// sum anyone meant.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    /// The units, largest first, with their length in milliseconds.
    const UNITS: [(&str, u64); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    // The index in UNITS of the last unit seen: the next must come after it.
    let mut last: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| "the number is too large".to_string())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(match unit {
                "" => "a unit is missing (ms, s, m, h or d)".into(),
                other => format!("unknown unit `{other}` (ms, s, m, h or d)"),
            });
        };
        match last {
            Some(l) if l == index => {
                return Err(format!(
                    "the unit `{unit}` appears twice: write each unit once"
                ));
            }
            Some(l) if l > index => {
                return Err(format!(
                    "`{unit}` comes after `{}`: write the units from the largest down, as in 1h30m",
                    UNITS[l].0
                ));
            }
            _ => last = Some(index),
        }
        let millis = number.checked_mul(UNITS[index].1).ok_or("it is too long")?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or("it is too long")?;
    }
    Ok(total)
}

/// Prints a duration the way it is written in files: `1h`, `1m30s`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_table() {
        let ok = [
            ("500ms", 500),
            ("10s", 10_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
            ("1m30s", 90_000),
            ("0s", 0),
            (" 3s ", 3_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
            assert_eq!(
                parse_duration(&format_duration(Duration::from_millis(ms))),
                Ok(Duration::from_millis(ms))
            );
        }
        for bad in [
            "",
            "10",
            "s",
            "10 s",
            "1.5s",
            "-1s",
            "10sec",
            "1h-",
            "99999999999999999999s",
            "18446744073709551615d",
            "1h1h",
            "1m30m",
            "30m1h",
            "1s500ms1s",
            "ms",
            "1h 30m",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
        // What is wrong is said, with what to write instead.
        assert_eq!(
            parse_duration("1h1h"),
            Err("the unit `h` appears twice: write each unit once".into())
        );
        assert_eq!(
            parse_duration("30m1h"),
            Err("`h` comes after `m`: write the units from the largest down, as in 1h30m".into())
        );
        assert_eq!(
            parse_duration("1d2h3m4s5ms"),
            Ok(Duration::from_millis(93_784_005))
        );
    }

    #[test]
    fn format_duration_table() {
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(90_500)), "1m30s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
