//! GTID sets (MySQL) and GTID positions (MariaDB), and the questions orch asks of them.
//!
//! Takes the strings servers print (`@@gtid_executed`, `@@gtid_current_pos`,
//! `@@gtid_binlog_state`, ...) and gives normalised values with a canonical text form, set
//! algebra, an ordering for failover candidate choice, and errant-transaction detection.
//! Pure: no I/O, no clock. One observation compares these values across thousands of hosts,
//! so a set is a sorted `Vec` of intervals, never a collection of single transaction numbers.
//!
//! # The two flavours record different things
//!
//! **MySQL** records a *set*: every transaction a server ever executed, as ranges of
//! transaction numbers (GNOs) per transaction source id — the originating server's uuid and,
//! since MySQL 8.3/8.4, an optional tag. `gtid_executed` is exact, so subset, difference and
//! counting are exact too.
//!
//! **MariaDB** keeps no such set, only *positions*, and its variables hold two shapes:
//!
//! | variable | holds | type here |
//! |---|---|---|
//! | `gtid_current_pos`, `gtid_slave_pos`, `gtid_binlog_pos` | the last GTID per replication domain | [`MariadbGtidPos`] |
//! | `gtid_binlog_state` | the last GTID per (domain, server_id) ever written to the binlog | [`MariadbBinlogState`] |
//!
//! Note that `gtid_binlog_pos` is one GTID *per domain* (MariaDB's `append_pos` writes each
//! domain's most recent GTID only); the per-(domain, server_id) record is `gtid_binlog_state`.
//! A position says "this server got as far as seq N in domain D" and nothing about which
//! earlier transactions it has. Comparing positions by sequence number is sound only when
//! sequence numbers grow monotonically within a domain, which MariaDB enforces only under
//! `gtid_strict_mode=ON`; orch's policy assumes strict mode and the docs below say where a
//! conclusion depends on it.
//!
//! # Vocabulary
//!
//! [`GtidSet`] is the flavour-neutral value the rest of orch passes around (a MySQL
//! `gtid_executed` or a MariaDB `gtid_current_pos`); [`ServerGtids`] is everything read from
//! one server that errant-transaction detection needs; [`GtidOrdering`] answers "who is
//! ahead" for candidate choice. Cross-flavour comparisons are [`FlavorMismatch`] errors, never
//! a silent `false`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::topology::Flavor;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A GTID string that could not be parsed: what was being parsed, the byte offset of the
/// problem, the offending fragment of the input and why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GtidParseError {
    what: &'static str,
    position: usize,
    fragment: Option<String>,
    reason: &'static str,
}

impl GtidParseError {
    fn new(what: &'static str, input: &str, position: usize, reason: &'static str) -> Self {
        GtidParseError {
            what,
            position,
            fragment: fragment_at(input, position),
            reason,
        }
    }

    /// Byte offset into the input where the problem starts.
    pub fn position(&self) -> usize {
        self.position
    }

    /// The offending piece of input (up to the next separator, at most 40 characters), or
    /// `None` when the input ended too early.
    pub fn fragment(&self) -> Option<&str> {
        self.fragment.as_deref()
    }

    /// Why the input is wrong, without position or fragment.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for GtidParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fragment {
            Some(frag) => write!(
                f,
                "invalid {}: {} at byte {}: {:?}",
                self.what, self.reason, self.position, frag
            ),
            None => write!(
                f,
                "invalid {}: {} at end of input (byte {})",
                self.what, self.reason, self.position
            ),
        }
    }
}

impl std::error::Error for GtidParseError {}

/// The text from `at` up to the next separator, capped so that a megabyte of garbage does
/// not end up in a log line. Iterates chars so it never splits a UTF-8 sequence.
fn fragment_at(input: &str, at: usize) -> Option<String> {
    const MAX_CHARS: usize = 40;
    let rest = input.get(at..).filter(|r| !r.is_empty())?;
    let mut out = String::new();
    let is_separator = |ch: char| ch == ',' || ch == ':' || ch.is_whitespace();
    let mut chars = rest.chars();
    let first = chars.next()?;
    out.push(first);
    // An unexpected separator is the whole fragment; otherwise read up to the next one.
    if !is_separator(first) {
        for (i, ch) in chars.enumerate() {
            if is_separator(ch) {
                break;
            }
            if i + 1 == MAX_CHARS {
                out.push('…');
                break;
            }
            out.push(ch);
        }
    }
    Some(out)
}

/// An operation was asked to compare a MySQL value with a MariaDB one. This means the
/// topology mixes flavours (or observation mislabelled a host); there is no sensible answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlavorMismatch {
    pub left: Flavor,
    pub right: Flavor,
}

impl fmt::Display for FlavorMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot compare {} GTIDs with {} GTIDs",
            self.left, self.right
        )
    }
}

impl std::error::Error for FlavorMismatch {}

// ---------------------------------------------------------------------------------------------
// A tiny cursor shared by both parsers
// ---------------------------------------------------------------------------------------------

struct Cursor<'a> {
    input: &'a str,
    pos: usize,
    what: &'static str,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl<'a> Cursor<'a> {
    fn new(input: &'a str, what: &'static str) -> Self {
        Cursor {
            input,
            pos: 0,
            what,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Bytes up to the next `,`, `:`, whitespace or end. Those stops are ASCII, so the slice
    /// always ends on a char boundary even for non-UTF-8-looking garbage.
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b == b',' || b == b':' || is_ws(b) {
                break;
            }
            self.pos += 1;
        }
        &self.input[start..self.pos]
    }

    /// A run of decimal digits no larger than `max`.
    fn number(
        &mut self,
        max: u64,
        missing: &'static str,
        too_big: &'static str,
    ) -> Result<u64, GtidParseError> {
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(b @ b'0'..=b'9') = self.peek() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .ok_or_else(|| self.err(start, too_big))?;
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.err(start, missing));
        }
        if value > max {
            return Err(self.err(start, too_big));
        }
        Ok(value)
    }

    fn err(&self, at: usize, reason: &'static str) -> GtidParseError {
        GtidParseError::new(self.what, self.input, at, reason)
    }
}

/// Implements serde as the canonical string (`Display` out, `FromStr` in), so JSON plans and
/// YAML specs carry exactly what a DBA would type into a client.
macro_rules! serde_as_canonical_string {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// `Debug` as the canonical text in a tuple-like wrapper: test failures stay readable.
macro_rules! debug_as_display {
    ($ty:ty) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), self.to_string())
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// How two GTID states relate
// ---------------------------------------------------------------------------------------------

/// How one server's GTID state relates to another's (`a.compare(b)` reads "a is ... of b").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GtidOrdering {
    /// Same transactions (MySQL) or the same GTID in every domain (MariaDB).
    Equal,
    /// `a` has everything `b` has, and more.
    Ahead,
    /// `b` has everything `a` has, and more.
    Behind,
    /// Each has something the other lacks: neither can simply catch up to the other.
    Diverged,
}

impl GtidOrdering {
    fn from_extras(left_has_extra: bool, right_has_extra: bool) -> Self {
        match (left_has_extra, right_has_extra) {
            (false, false) => GtidOrdering::Equal,
            (true, false) => GtidOrdering::Ahead,
            (false, true) => GtidOrdering::Behind,
            (true, true) => GtidOrdering::Diverged,
        }
    }

    /// The same relation seen from the other side.
    pub fn reverse(self) -> Self {
        match self {
            GtidOrdering::Ahead => GtidOrdering::Behind,
            GtidOrdering::Behind => GtidOrdering::Ahead,
            other => other,
        }
    }

    /// `a` has at least everything `b` has.
    pub fn includes(self) -> bool {
        matches!(self, GtidOrdering::Equal | GtidOrdering::Ahead)
    }
}

/// A number of transactions and whether it is exact (MySQL) or an estimate from sequence
/// numbers (MariaDB, see [`MariadbGtidPos::seq_distance`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TransactionCount {
    pub count: u64,
    pub exact: bool,
}

// ---------------------------------------------------------------------------------------------
// MySQL: uuids, tags, intervals
// ---------------------------------------------------------------------------------------------

/// A server uuid (the first half of a MySQL GTID). Printed lower-case and hyphenated, as
/// MySQL prints `gtid_executed`; parsed from the hyphenated, plain 32-hex-digit or
/// `{braced}` forms MySQL accepts, in any case.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(u128);

impl Uuid {
    pub const fn from_u128(value: u128) -> Self {
        Uuid(value)
    }

    pub const fn as_u128(self) -> u128 {
        self.0
    }

    fn parse_text(text: &str) -> Option<Uuid> {
        let text = match text.strip_prefix('{') {
            Some(inner) => inner.strip_suffix('}')?,
            None => text,
        };
        let bytes = text.as_bytes();
        let hyphenated = match bytes.len() {
            36 => true,
            32 => false,
            _ => return None,
        };
        let mut value: u128 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if hyphenated && matches!(i, 8 | 13 | 18 | 23) {
                if b != b'-' {
                    return None;
                }
                continue;
            }
            let digit = char::from(b).to_digit(16)?;
            value = (value << 4) | u128::from(digit);
        }
        Some(Uuid(value))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = format!("{:032x}", self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

impl FromStr for Uuid {
    type Err = GtidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_text(s).ok_or_else(|| GtidParseError::new("UUID", s, 0, "not a UUID"))
    }
}

debug_as_display!(Uuid);
serde_as_canonical_string!(Uuid);

/// A MySQL 8.3+ GTID tag (`uuid:tag:1-5`): 1–32 characters, a letter or `_` then letters,
/// digits or `_`. MySQL compares tags case-insensitively and prints them lower-case, so the
/// tag is stored lower-case.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

impl Tag {
    const MAX_LEN: usize = 32;

    /// `None` when `text` is not a valid tag.
    pub fn new(text: &str) -> Option<Tag> {
        let bytes = text.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_');
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_');
        (first_ok && rest_ok && bytes.len() <= Self::MAX_LEN)
            .then(|| Tag(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

debug_as_display!(Tag);

/// A transaction source id: which stream of GNOs a transaction belongs to. Untagged sorts
/// before tagged, matching MySQL's output (`uuid:1-5:tag:1-3`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tsid {
    pub uuid: Uuid,
    pub tag: Option<Tag>,
}

impl Tsid {
    pub fn untagged(uuid: Uuid) -> Self {
        Tsid { uuid, tag: None }
    }

    pub fn tagged(uuid: Uuid, tag: Tag) -> Self {
        Tsid {
            uuid,
            tag: Some(tag),
        }
    }
}

impl fmt::Display for Tsid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tag {
            Some(tag) => write!(f, "{}:{}", self.uuid, tag),
            None => write!(f, "{}", self.uuid),
        }
    }
}

/// An inclusive range of GNOs, `start..=end` with `1 <= start <= end`. Inclusive ends keep
/// `u64::MAX` representable without overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval {
    start: u64,
    end: u64,
}

impl Interval {
    /// `None` unless `1 <= start <= end`: MySQL GNOs start at 1.
    pub fn new(start: u64, end: u64) -> Option<Self> {
        (start >= 1 && start <= end).then_some(Interval { start, end })
    }

    pub fn single(gno: u64) -> Option<Self> {
        Interval::new(gno, gno)
    }

    pub fn start(self) -> u64 {
        self.start
    }

    pub fn end(self) -> u64 {
        self.end
    }

    /// Number of GNOs; cannot overflow because `start >= 1`.
    pub fn count(self) -> u64 {
        self.end - self.start + 1
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

// Interval lists below are always *normalised*: sorted by start, disjoint and not adjacent
// (`1-5:6-9` is stored as `1-9`). Every operation is a linear merge of two such lists.

/// Appends `iv` to a normalised list whose last start is <= `iv.start`, coalescing.
fn push_coalesce(out: &mut Vec<Interval>, iv: Interval) {
    if let Some(last) = out.last_mut() {
        // saturating: an interval ending at u64::MAX absorbs everything after it.
        if iv.start <= last.end.saturating_add(1) {
            last.end = last.end.max(iv.end);
            return;
        }
    }
    out.push(iv);
}

fn normalise(list: &mut Vec<Interval>) {
    list.sort_unstable_by_key(|iv| iv.start);
    let mut out = Vec::with_capacity(list.len());
    for &iv in list.iter() {
        push_coalesce(&mut out, iv);
    }
    *list = out;
}

fn union_intervals(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let take_a = j >= b.len() || (i < a.len() && a[i].start <= b[j].start);
        if take_a {
            push_coalesce(&mut out, a[i]);
            i += 1;
        } else {
            push_coalesce(&mut out, b[j]);
            j += 1;
        }
    }
    out
}

fn intersect_intervals(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let start = a[i].start.max(b[j].start);
        let end = a[i].end.min(b[j].end);
        if start <= end {
            out.push(Interval { start, end });
        }
        if a[i].end < b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

fn subtract_intervals(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut j = 0;
    for &iv in a {
        while j < b.len() && b[j].end < iv.start {
            j += 1;
        }
        let mut start = iv.start;
        let mut covered_to_end = false;
        let mut k = j;
        // b[k] overlaps iv here: b is sorted and b[j].end >= iv.start.
        while k < b.len() && b[k].start <= iv.end {
            if b[k].start > start {
                out.push(Interval {
                    start,
                    end: b[k].start - 1,
                });
            }
            if b[k].end >= iv.end {
                covered_to_end = true;
                break;
            }
            // b[k].end < iv.end <= u64::MAX, so no overflow.
            start = b[k].end + 1;
            k += 1;
        }
        if !covered_to_end {
            out.push(Interval { start, end: iv.end });
        }
    }
    out
}

fn intervals_subset(a: &[Interval], b: &[Interval]) -> bool {
    let mut j = 0;
    for iv in a {
        while j < b.len() && b[j].end < iv.start {
            j += 1;
        }
        // b is normalised, so a contained interval lies within a single b interval.
        match b.get(j) {
            Some(cover) if cover.start <= iv.start && iv.end <= cover.end => {}
            _ => return false,
        }
    }
    true
}

fn count_intervals(list: &[Interval]) -> u64 {
    list.iter()
        .fold(0u64, |acc, iv| acc.saturating_add(iv.count()))
}

// ---------------------------------------------------------------------------------------------
// MySQL GTID sets
// ---------------------------------------------------------------------------------------------

/// A MySQL GTID set such as `gtid_executed`: GNO intervals per [`Tsid`].
///
/// Canonical text: tsids sorted (uuid, then untagged before tags in tag order), uuids and tags
/// lower-case, intervals merged and sorted, one comma-separated entry per uuid
/// (`uuid:1-5:7:tag_a:1-3,uuid2:1-100`). MySQL prints `,\n` between entries; we print `,`
/// so that the text fits on one line in plans and logs — MySQL accepts both.
///
/// GNOs are accepted up to `u64::MAX`; MySQL itself stops at 2^63-1, but rejecting a larger
/// number would only turn a future server's output into an observation error.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct MysqlGtidSet {
    /// Sorted by tsid, unique, every list non-empty and normalised.
    entries: Vec<(Tsid, Vec<Interval>)>,
}

impl MysqlGtidSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of transactions in the set; saturates at `u64::MAX` (only reachable with
    /// absurd GNOs across several uuids).
    pub fn count(&self) -> u64 {
        self.entries.iter().fold(0u64, |acc, (_, ivs)| {
            acc.saturating_add(count_intervals(ivs))
        })
    }

    /// The (tsid, intervals) pairs in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (&Tsid, &[Interval])> {
        self.entries.iter().map(|(t, ivs)| (t, ivs.as_slice()))
    }

    /// Intervals recorded for `tsid`; empty when none.
    pub fn intervals(&self, tsid: &Tsid) -> &[Interval] {
        match self.entries.binary_search_by(|(t, _)| t.cmp(tsid)) {
            Ok(i) => &self.entries[i].1,
            Err(_) => &[],
        }
    }

    /// Whether the single GTID `tsid:gno` is in the set.
    pub fn contains_gtid(&self, tsid: &Tsid, gno: u64) -> bool {
        let ivs = self.intervals(tsid);
        let i = ivs.partition_point(|iv| iv.end < gno);
        ivs.get(i).is_some_and(|iv| iv.start <= gno)
    }

    /// Adds `interval` for `tsid` (used by the simulator to commit transactions).
    pub fn insert(&mut self, tsid: Tsid, interval: Interval) {
        match self.entries.binary_search_by(|(t, _)| t.cmp(&tsid)) {
            Ok(i) => {
                let merged = union_intervals(&self.entries[i].1, &[interval]);
                self.entries[i].1 = merged;
            }
            Err(i) => self.entries.insert(i, (tsid, vec![interval])),
        }
    }

    /// Walks both sorted entry lists once; `both` combines the lists of a tsid present in
    /// each, and its empty results are dropped so the value stays canonical.
    fn merge_with(
        &self,
        other: &Self,
        keep_left_only: bool,
        keep_right_only: bool,
        both: fn(&[Interval], &[Interval]) -> Vec<Interval>,
    ) -> Self {
        use std::cmp::Ordering;
        let (a, b) = (&self.entries, &other.entries);
        let mut entries = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let order = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => x.0.cmp(&y.0),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match order {
                Ordering::Less => {
                    if keep_left_only {
                        entries.push(a[i].clone());
                    }
                    i += 1;
                }
                Ordering::Greater => {
                    if keep_right_only {
                        entries.push(b[j].clone());
                    }
                    j += 1;
                }
                Ordering::Equal => {
                    let ivs = both(&a[i].1, &b[j].1);
                    if !ivs.is_empty() {
                        entries.push((a[i].0.clone(), ivs));
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        MysqlGtidSet { entries }
    }

    pub fn union(&self, other: &Self) -> Self {
        self.merge_with(other, true, true, union_intervals)
    }

    pub fn intersection(&self, other: &Self) -> Self {
        self.merge_with(other, false, false, intersect_intervals)
    }

    /// The transactions in `self` that are not in `other` (MySQL's `GTID_SUBTRACT`).
    pub fn subtract(&self, other: &Self) -> Self {
        self.merge_with(other, true, false, subtract_intervals)
    }

    /// Whether every transaction in `self` is also in `other` (MySQL's `GTID_SUBSET`).
    /// Allocation-free: this is the hot comparison when observing many hosts.
    pub fn is_subset(&self, other: &Self) -> bool {
        let mut j = 0;
        for (tsid, ivs) in &self.entries {
            while j < other.entries.len() && other.entries[j].0 < *tsid {
                j += 1;
            }
            match other.entries.get(j) {
                Some((t, theirs)) if t == tsid && intervals_subset(ivs, theirs) => {}
                _ => return false,
            }
        }
        true
    }

    /// How `self` relates to `other` as sets.
    pub fn compare(&self, other: &Self) -> GtidOrdering {
        GtidOrdering::from_extras(!self.is_subset(other), !other.is_subset(self))
    }
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous: Option<Uuid> = None;
        for (tsid, ivs) in &self.entries {
            if previous != Some(tsid.uuid) {
                if previous.is_some() {
                    f.write_str(",")?;
                }
                write!(f, "{}", tsid.uuid)?;
                previous = Some(tsid.uuid);
            }
            if let Some(tag) = &tsid.tag {
                write!(f, ":{tag}")?;
            }
            for iv in ivs {
                write!(f, ":{iv}")?;
            }
        }
        Ok(())
    }
}

/// Grammar (whitespace allowed around every separator, as in `gtid_executed`'s `,\n`):
///
/// ```text
/// set      := "" | entry ("," entry)*
/// entry    := uuid (":" item)+          -- a tag must be followed by at least one interval
/// item     := interval | tag            -- a tag applies to the intervals after it
/// interval := gno | gno "-" gno         -- 1 <= start <= end
/// ```
///
/// Repeated uuids, overlapping or unsorted intervals are accepted and normalised, as MySQL
/// does. An empty entry (`,,`, a trailing comma) is rejected: it is a truncated value, and
/// accepting it would hide the truncation.
impl FromStr for MysqlGtidSet {
    type Err = GtidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut c = Cursor::new(s, "MySQL GTID set");
        let mut map: BTreeMap<Tsid, Vec<Interval>> = BTreeMap::new();
        c.skip_ws();
        if c.at_end() {
            return Ok(MysqlGtidSet::new());
        }
        loop {
            c.skip_ws();
            let uuid_at = c.pos;
            let word = c.word();
            if word.is_empty() {
                return Err(c.err(uuid_at, "expected a UUID"));
            }
            let uuid = Uuid::parse_text(word).ok_or_else(|| c.err(uuid_at, "invalid UUID"))?;
            c.skip_ws();
            if !c.eat(b':') {
                return Err(c.err(c.pos, "expected ':' and an interval after the UUID"));
            }
            let mut tsid = Tsid::untagged(uuid);
            // Where the current tag started, while it has no interval yet.
            let mut bare_tag_at: Option<usize> = None;
            loop {
                c.skip_ws();
                let item_at = c.pos;
                match c.peek() {
                    Some(b'0'..=b'9') => {
                        let iv = parse_interval(&mut c)?;
                        map.entry(tsid.clone()).or_default().push(iv);
                        bare_tag_at = None;
                    }
                    Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
                        if let Some(at) = bare_tag_at {
                            return Err(c.err(at, "tag has no intervals"));
                        }
                        let tag = Tag::new(c.word()).ok_or_else(|| {
                            c.err(
                                item_at,
                                "invalid tag (1-32 letters, digits or '_', not starting with a digit)",
                            )
                        })?;
                        tsid = Tsid::tagged(uuid, tag);
                        bare_tag_at = Some(item_at);
                    }
                    _ => return Err(c.err(item_at, "expected an interval or a tag")),
                }
                c.skip_ws();
                if !c.eat(b':') {
                    break;
                }
            }
            if let Some(at) = bare_tag_at {
                return Err(c.err(at, "tag has no intervals"));
            }
            c.skip_ws();
            if c.at_end() {
                break;
            }
            if !c.eat(b',') {
                return Err(c.err(c.pos, "expected ',', ':' or end of input"));
            }
        }
        let entries = map
            .into_iter()
            .map(|(tsid, mut ivs)| {
                normalise(&mut ivs);
                (tsid, ivs)
            })
            .collect();
        Ok(MysqlGtidSet { entries })
    }
}

fn parse_interval(c: &mut Cursor<'_>) -> Result<Interval, GtidParseError> {
    const MISSING: &str = "expected a transaction number";
    const TOO_BIG: &str = "transaction number is larger than 18446744073709551615";
    let at = c.pos;
    let start = c.number(u64::MAX, MISSING, TOO_BIG)?;
    c.skip_ws();
    let end = if c.eat(b'-') {
        c.skip_ws();
        c.number(u64::MAX, MISSING, TOO_BIG)?
    } else {
        start
    };
    if start == 0 {
        return Err(c.err(at, "transaction number 0 is invalid: MySQL GNOs start at 1"));
    }
    Interval::new(start, end).ok_or_else(|| c.err(at, "interval end is before its start"))
}

debug_as_display!(MysqlGtidSet);
serde_as_canonical_string!(MysqlGtidSet);

// ---------------------------------------------------------------------------------------------
// MariaDB GTIDs, positions and binlog state
// ---------------------------------------------------------------------------------------------

/// One MariaDB GTID, `domain_id-server_id-seq_no`. The fields are bounded only by MariaDB's
/// own types (`mysql.gtid_slave_pos`: 32-bit unsigned domain and server ids, 64-bit unsigned
/// `seq_no`); unlike MySQL GNOs, no value is reserved here.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MariadbGtid {
    pub domain_id: u32,
    pub server_id: u32,
    pub seq_no: u64,
}

impl MariadbGtid {
    pub fn new(domain_id: u32, server_id: u32, seq_no: u64) -> Self {
        MariadbGtid {
            domain_id,
            server_id,
            seq_no,
        }
    }
}

impl fmt::Display for MariadbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain_id, self.server_id, self.seq_no)
    }
}

impl FromStr for MariadbGtid {
    type Err = GtidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_mariadb_list(s, "MariaDB GTID")?.as_slice() {
            [(_, gtid)] => Ok(*gtid),
            [] => Err(GtidParseError::new("MariaDB GTID", s, 0, "expected a GTID")),
            [_, (at, _), ..] => Err(GtidParseError::new(
                "MariaDB GTID",
                s,
                *at,
                "expected one GTID, found a list",
            )),
        }
    }
}

debug_as_display!(MariadbGtid);
serde_as_canonical_string!(MariadbGtid);

/// Parses `d-s-n, d-s-n, ...` (whitespace allowed around commas) and returns each GTID with
/// the byte offset where it starts, for duplicate-key errors.
fn parse_mariadb_list(
    s: &str,
    what: &'static str,
) -> Result<Vec<(usize, MariadbGtid)>, GtidParseError> {
    let mut c = Cursor::new(s, what);
    let mut out = Vec::new();
    c.skip_ws();
    if c.at_end() {
        return Ok(out);
    }
    loop {
        c.skip_ws();
        let at = c.pos;
        if c.at_end() {
            return Err(c.err(at, "expected a GTID domain-server-seq"));
        }
        let domain_id = mariadb_number(&mut c, u64::from(u32::MAX), DOMAIN_ID)?;
        if !c.eat(b'-') {
            return Err(c.err(c.pos, "expected '-' after the domain id"));
        }
        let server_id = mariadb_number(&mut c, u64::from(u32::MAX), SERVER_ID)?;
        if !c.eat(b'-') {
            return Err(c.err(c.pos, "expected '-' after the server id"));
        }
        let seq_no = mariadb_number(&mut c, u64::MAX, SEQ_NO)?;
        // Bounded by u32::MAX above; the conversion cannot fail.
        let gtid = MariadbGtid::new(
            u32::try_from(domain_id).unwrap_or(u32::MAX),
            u32::try_from(server_id).unwrap_or(u32::MAX),
            seq_no,
        );
        out.push((at, gtid));
        c.skip_ws();
        if c.at_end() {
            return Ok(out);
        }
        if !c.eat(b',') {
            return Err(c.err(c.pos, "expected ',' or end of input"));
        }
    }
}

/// (reason when missing, reason when too large) for each field of a MariaDB GTID.
type FieldReasons = (&'static str, &'static str);
const DOMAIN_ID: FieldReasons = (
    "expected the domain id",
    "domain id is larger than 4294967295",
);
const SERVER_ID: FieldReasons = (
    "expected the server id",
    "server id is larger than 4294967295",
);
const SEQ_NO: FieldReasons = (
    "expected the sequence number",
    "sequence number is larger than 18446744073709551615",
);

fn mariadb_number(
    c: &mut Cursor<'_>,
    max: u64,
    (missing, too_big): FieldReasons,
) -> Result<u64, GtidParseError> {
    if c.peek() == Some(b'-') {
        return Err(c.err(c.pos, "negative numbers are not valid in a GTID"));
    }
    c.number(max, missing, too_big)
}

/// A MariaDB GTID position: at most one GTID per replication domain, the last one applied
/// (`gtid_current_pos`, `gtid_slave_pos`) or logged (`gtid_binlog_pos`) in that domain.
///
/// Canonical text: sorted by domain id, as MariaDB prints it. A duplicate domain in the input
/// is an error, as MariaDB itself rejects it in `SET GLOBAL gtid_slave_pos`: a position with
/// two GTIDs for one domain has no meaning.
///
/// # What a comparison can conclude
///
/// Positions are compared per domain by `seq_no`. Under `gtid_strict_mode` sequence numbers
/// only grow within a domain, so a higher `seq_no` means "further along the same stream".
/// Two things cannot be concluded from positions alone:
/// - that the earlier transactions are the *same* ones: a server at `0-1-100` may have
///   applied a different transaction 50 than one at `0-1-120`. Equal `seq_no` with a
///   different `server_id` is certainly a different transaction, so it is reported as
///   [`GtidOrdering::Diverged`];
/// - errant transactions hidden behind a later position (see [`MariadbServerGtids`]).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct MariadbGtidPos {
    /// Sorted by domain id, unique.
    gtids: Vec<MariadbGtid>,
}

impl MariadbGtidPos {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.gtids.is_empty()
    }

    /// Number of domains.
    pub fn len(&self) -> usize {
        self.gtids.len()
    }

    /// The GTIDs in domain order.
    pub fn iter(&self) -> impl Iterator<Item = &MariadbGtid> {
        self.gtids.iter()
    }

    /// The last GTID in `domain_id`.
    pub fn get(&self, domain_id: u32) -> Option<MariadbGtid> {
        self.gtids
            .binary_search_by_key(&domain_id, |g| g.domain_id)
            .ok()
            .map(|i| self.gtids[i])
    }

    /// Sets the domain's GTID (the simulator's "a transaction was applied"); returns the one
    /// it replaces.
    pub fn insert(&mut self, gtid: MariadbGtid) -> Option<MariadbGtid> {
        match self
            .gtids
            .binary_search_by_key(&gtid.domain_id, |g| g.domain_id)
        {
            Ok(i) => Some(std::mem::replace(&mut self.gtids[i], gtid)),
            Err(i) => {
                self.gtids.insert(i, gtid);
                None
            }
        }
    }

    /// Per-domain comparison, combined: `Ahead` when `self` is at or past `other` in every
    /// domain of `other` and strictly past it (or alone) in at least one; `Diverged` when
    /// each is ahead somewhere, or when a domain has equal `seq_no` from different servers.
    pub fn compare(&self, other: &Self) -> GtidOrdering {
        let (mut left_extra, mut right_extra) = (false, false);
        let (a, b) = (&self.gtids, &other.gtids);
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x.domain_id == y.domain_id => {
                    if x.seq_no > y.seq_no {
                        left_extra = true;
                    } else if x.seq_no < y.seq_no {
                        right_extra = true;
                    } else if x.server_id != y.server_id {
                        // Same seq_no from two servers: two different transactions.
                        return GtidOrdering::Diverged;
                    }
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x.domain_id < y.domain_id => {
                    left_extra = true;
                    i += 1;
                }
                (Some(_), None) => {
                    left_extra = true;
                    i += 1;
                }
                _ => {
                    right_extra = true;
                    j += 1;
                }
            }
        }
        GtidOrdering::from_extras(left_extra, right_extra)
    }

    /// "`self` has everything up to `other`": for every domain in `other`, `self` has that
    /// domain at the same or a higher `seq_no` (and not the same `seq_no` from another
    /// server). Sound under `gtid_strict_mode`; see the type docs for what it cannot see.
    pub fn includes(&self, other: &Self) -> bool {
        self.compare(other).includes()
    }

    /// `self` includes `other` and is strictly further in at least one domain.
    pub fn is_ahead_of(&self, other: &Self) -> bool {
        self.compare(other) == GtidOrdering::Ahead
    }

    /// `self`'s GTIDs in the domains where `other` does not include them: `other` lacks at
    /// least that GTID there (and, by sequence number, probably those before it).
    pub fn missing_from(&self, other: &Self) -> MariadbGtidPos {
        let gtids = self
            .gtids
            .iter()
            .filter(|mine| !domain_included(other.get(mine.domain_id), mine))
            .copied()
            .collect();
        MariadbGtidPos { gtids }
    }

    /// What a MariaDB server has executed: per domain, the later of what it binlogged
    /// (`gtid_binlog_pos`: its own writes, and what it replicated with log_slave_updates)
    /// and what it replicated (`gtid_slave_pos`). `gtid_current_pos` is not it: a former
    /// primary repointed with `current_pos` holds its own writes only in its binlog.
    pub fn executed(binlog_pos: &str, slave_pos: &str) -> Result<MariadbGtidPos, String> {
        let mut pos: MariadbGtidPos = binlog_pos
            .parse()
            .map_err(|e| format!("gtid_binlog_pos {binlog_pos:?}: {e}"))?;
        let slave: MariadbGtidPos = slave_pos
            .parse()
            .map_err(|e| format!("gtid_slave_pos {slave_pos:?}: {e}"))?;
        for g in slave.iter() {
            if pos.get(g.domain_id).is_none_or(|b| b.seq_no < g.seq_no) {
                pos.insert(*g);
            }
        }
        Ok(pos)
    }

    /// Estimated number of transactions `self` has beyond `other`: the sum over domains of
    /// the `seq_no` difference where `self` is ahead (a domain `other` lacks counts from 0;
    /// an equal `seq_no` from another server counts 1). An estimate: seq_no gaps (a manual
    /// `gtid_seq_no`, a promotion that skipped numbers) over-count.
    pub fn seq_distance(&self, other: &Self) -> u64 {
        self.gtids.iter().fold(0u64, |acc, mine| {
            let ahead_by = match other.get(mine.domain_id) {
                None => mine.seq_no,
                Some(theirs)
                    if theirs.seq_no == mine.seq_no && theirs.server_id != mine.server_id =>
                {
                    1
                }
                Some(theirs) => mine.seq_no.saturating_sub(theirs.seq_no),
            };
            acc.saturating_add(ahead_by)
        })
    }
}

/// Whether a position's GTID `theirs` (for one domain) includes `mine` from the same domain.
fn domain_included(theirs: Option<MariadbGtid>, mine: &MariadbGtid) -> bool {
    theirs.is_some_and(|t| {
        t.seq_no > mine.seq_no || (t.seq_no == mine.seq_no && t.server_id == mine.server_id)
    })
}

impl fmt::Display for MariadbGtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_gtid_list(f, &self.gtids)
    }
}

fn write_gtid_list(f: &mut fmt::Formatter<'_>, gtids: &[MariadbGtid]) -> fmt::Result {
    for (i, gtid) in gtids.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{gtid}")?;
    }
    Ok(())
}

impl FromStr for MariadbGtidPos {
    type Err = GtidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const WHAT: &str = "MariaDB GTID position";
        let mut parsed = parse_mariadb_list(s, WHAT)?;
        // Stable sort keeps input order within a domain, so the error names the later one.
        parsed.sort_by_key(|(_, g)| g.domain_id);
        if let Some(pair) = parsed
            .windows(2)
            .find(|w| w[0].1.domain_id == w[1].1.domain_id)
        {
            return Err(GtidParseError::new(
                WHAT,
                s,
                pair[1].0,
                "duplicate domain id: a position holds one GTID per domain",
            ));
        }
        Ok(MariadbGtidPos {
            gtids: parsed.into_iter().map(|(_, g)| g).collect(),
        })
    }
}

debug_as_display!(MariadbGtidPos);
serde_as_canonical_string!(MariadbGtidPos);

/// MariaDB's `gtid_binlog_state`: the last GTID for every (domain, server_id) pair ever
/// written to the server's binary log. It survives binlog purges but not `RESET MASTER`, and
/// `FLUSH BINARY LOGS DELETE_DOMAIN_ID` removes domains from it.
///
/// Canonical text: by domain id, then by `seq_no`, then server id. Ordering within a domain
/// by `seq_no` (rather than server id) matters: when this text is loaded back with
/// `SET GLOBAL gtid_binlog_state`, MariaDB takes the *last* GTID listed for a domain as that
/// domain's most recent one, and it prints the state that way itself. Under
/// `gtid_strict_mode` the most recent is the highest `seq_no`, so our order keeps that
/// meaning. A duplicate (domain, server_id) in the input is an error.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct MariadbBinlogState {
    /// Sorted by (domain_id, seq_no, server_id), unique per (domain_id, server_id).
    gtids: Vec<MariadbGtid>,
}

fn binlog_state_key(g: &MariadbGtid) -> (u32, u64, u32) {
    (g.domain_id, g.seq_no, g.server_id)
}

impl MariadbBinlogState {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.gtids.is_empty()
    }

    /// Number of (domain, server_id) pairs.
    pub fn len(&self) -> usize {
        self.gtids.len()
    }

    /// The GTIDs in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = &MariadbGtid> {
        self.gtids.iter()
    }

    fn domain_range(&self, domain_id: u32) -> &[MariadbGtid] {
        let start = self.gtids.partition_point(|g| g.domain_id < domain_id);
        let end = self.gtids.partition_point(|g| g.domain_id <= domain_id);
        &self.gtids[start..end]
    }

    /// The last `seq_no` logged for (domain, server_id).
    pub fn get(&self, domain_id: u32, server_id: u32) -> Option<u64> {
        self.domain_range(domain_id)
            .iter()
            .find(|g| g.server_id == server_id)
            .map(|g| g.seq_no)
    }

    /// Records that `gtid` was written to the binlog (the simulator's commit); returns the
    /// `seq_no` it replaces for that (domain, server_id).
    pub fn insert(&mut self, gtid: MariadbGtid) -> Option<u64> {
        let old = self
            .gtids
            .iter()
            .position(|g| g.domain_id == gtid.domain_id && g.server_id == gtid.server_id)
            .map(|i| self.gtids.remove(i).seq_no);
        let key = binlog_state_key(&gtid);
        let at = self.gtids.partition_point(|g| binlog_state_key(g) < key);
        self.gtids.insert(at, gtid);
        old
    }

    /// Each domain's most recent GTID, i.e. what `gtid_binlog_pos` would show. Taken as the
    /// highest `seq_no` in the domain, which is MariaDB's answer under `gtid_strict_mode`
    /// (without it, the true most recent one is not recoverable from the text).
    pub fn most_recent(&self) -> MariadbGtidPos {
        let mut gtids: Vec<MariadbGtid> = Vec::new();
        for g in &self.gtids {
            match gtids.last_mut() {
                // Sorted by seq_no within a domain: later entries win.
                Some(last) if last.domain_id == g.domain_id => *last = *g,
                _ => gtids.push(*g),
            }
        }
        MariadbGtidPos { gtids }
    }

    /// Whether, for every (domain, server_id) in `other`, `self` has logged that pair up to at
    /// least the same `seq_no`.
    pub fn includes(&self, other: &Self) -> bool {
        other.gtids.iter().all(|g| {
            self.get(g.domain_id, g.server_id)
                .is_some_and(|n| n >= g.seq_no)
        })
    }
}

impl fmt::Display for MariadbBinlogState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_gtid_list(f, &self.gtids)
    }
}

impl FromStr for MariadbBinlogState {
    type Err = GtidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const WHAT: &str = "MariaDB binlog state";
        let mut parsed = parse_mariadb_list(s, WHAT)?;
        parsed.sort_by_key(|(_, g)| (g.domain_id, g.server_id));
        if let Some(pair) = parsed
            .windows(2)
            .find(|w| (w[0].1.domain_id, w[0].1.server_id) == (w[1].1.domain_id, w[1].1.server_id))
        {
            return Err(GtidParseError::new(
                WHAT,
                s,
                pair[1].0,
                "duplicate domain-server pair: the binlog state holds one GTID per pair",
            ));
        }
        let mut gtids: Vec<MariadbGtid> = parsed.into_iter().map(|(_, g)| g).collect();
        gtids.sort_unstable_by_key(binlog_state_key);
        Ok(MariadbBinlogState { gtids })
    }
}

debug_as_display!(MariadbBinlogState);
serde_as_canonical_string!(MariadbBinlogState);

// ---------------------------------------------------------------------------------------------
// Errant transactions
// ---------------------------------------------------------------------------------------------

/// What orch reads from one MariaDB server to reason about errant transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MariadbServerGtids {
    /// `@@server_id`.
    pub server_id: u32,
    /// `@@gtid_current_pos`.
    pub current_pos: MariadbGtidPos,
    /// `@@gtid_binlog_state`.
    pub binlog_state: MariadbBinlogState,
}

/// One (domain, server_id) stream in which a MariaDB replica has at least one transaction its
/// source never had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MariadbErrant {
    /// The replica's last GTID in that (domain, server_id) stream.
    pub gtid: MariadbGtid,
    /// The source's last `seq_no` for the same pair, when it has one (then lower than
    /// `gtid.seq_no`).
    pub source_seq_no: Option<u64>,
    /// The GTID carries the replica's own server id: the classic errant write, made directly
    /// on the replica.
    pub own_write: bool,
}

/// The whole range of the stream the source lacks, `domain-server-first..last`: the
/// stream's transactions with sequence numbers after the source's last one in that stream
/// (from 1 when it has none) up to the replica's, e.g. `0-101-369..452`; one number when
/// the range holds one (`0-101-452`). Sequence numbers are shared by every server of a
/// domain, so not every number in the range is a transaction of this stream: the range
/// bounds them, it does not count them.
impl fmt::Display for MariadbErrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.gtid;
        let first = self.source_seq_no.map_or(1, |n| n.saturating_add(1));
        if first >= g.seq_no {
            write!(f, "{g}")
        } else {
            write!(f, "{}-{}-{first}..{}", g.domain_id, g.server_id, g.seq_no)
        }
    }
}

impl MariadbServerGtids {
    /// The errant transactions of this replica relative to `source`.
    ///
    /// # Rule
    ///
    /// A GTID `(d, s, n)` in the replica's `gtid_binlog_state` is errant when the source shows
    /// no sign of having had it:
    /// - the source's `gtid_binlog_state` has no `(d, s)` entry, or one with a `seq_no < n`,
    /// - **and** the source's `gtid_current_pos` is not `(d, s, m)` with `m >= n`. This second
    ///   clause covers a source running without `log_slave_updates`, whose binlog state
    ///   lacks what it replicated but whose current position still records the last
    ///   replicated GTID.
    ///
    /// A GTID carrying the **source's own `server_id`** is never errant, however far past
    /// the source's observed state: the source wrote it (server_ids are unique in a
    /// cluster; orch blocks duplicates), so it only shows that the replica was observed
    /// after the source took more writes. Without this rule every replica of a busy
    /// primary, read a few milliseconds after it, looked errant.
    ///
    /// Entries carrying the replica's own `server_id` are flagged `own_write`: writes made
    /// directly on the replica. Others mean the replica got transactions from somewhere the
    /// source did not (another source, a former primary the new source never caught up
    /// with, or a source that lost its binlog tail).
    ///
    /// # What can and cannot be concluded
    ///
    /// MariaDB keeps only the *last* `seq_no` per (domain, server_id), not a set, so:
    /// - each returned entry stands for **at least one** errant transaction; how many is
    ///   unknowable (sequence numbers are shared by all servers in a domain, so the gap
    ///   `n - source_seq_no` is not a count). [`ErrantTransactions::count_at_least`] is a
    ///   lower bound;
    /// - an empty result does not prove absence: an errant transaction followed by later
    ///   legitimate ones from the same (domain, server_id) is hidden behind them, and a
    ///   replica without a binary log (or a write with `sql_log_bin=0`) leaves no trace;
    /// - the result is relative to what the source's state still records: after
    ///   `RESET MASTER` or `DELETE_DOMAIN_ID` on the source, or for a multi-source replica,
    ///   legitimate entries show up as errant.
    pub fn errant_relative_to(&self, source: &MariadbServerGtids) -> Vec<MariadbErrant> {
        self.binlog_state
            .iter()
            .filter(|g| g.server_id != source.server_id)
            .filter_map(|g| {
                let source_seq_no = source.binlog_state.get(g.domain_id, g.server_id);
                let in_binlog = source_seq_no.is_some_and(|m| m >= g.seq_no);
                let in_position = source
                    .current_pos
                    .get(g.domain_id)
                    .is_some_and(|p| p.server_id == g.server_id && p.seq_no >= g.seq_no);
                (!in_binlog && !in_position).then_some(MariadbErrant {
                    gtid: *g,
                    source_seq_no,
                    own_write: g.server_id == self.server_id,
                })
            })
            .collect()
    }
}

/// Everything orch reads from one server to compare it with another: the input to errant
/// transaction detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerGtids {
    /// `@@gtid_executed`.
    Mysql(MysqlGtidSet),
    Mariadb(MariadbServerGtids),
}

impl ServerGtids {
    pub fn flavor(&self) -> Flavor {
        match self {
            ServerGtids::Mysql(_) => Flavor::Mysql,
            ServerGtids::Mariadb(_) => Flavor::Mariadb,
        }
    }

    /// The value used for "who is ahead" comparisons: `gtid_executed` for MySQL,
    /// `gtid_current_pos` for MariaDB.
    pub fn position(&self) -> GtidSet {
        match self {
            ServerGtids::Mysql(set) => GtidSet::Mysql(set.clone()),
            ServerGtids::Mariadb(m) => GtidSet::Mariadb(m.current_pos.clone()),
        }
    }

    /// The transactions this replica has that `source` does not. A replica legitimately
    /// gets everything through its source, so anything extra is errant.
    ///
    /// MySQL: exactly `replica.gtid_executed − source.gtid_executed`.
    /// MariaDB: see [`MariadbServerGtids::errant_relative_to`] — a lower bound, per
    /// (domain, server_id).
    pub fn errant_relative_to(
        &self,
        source: &ServerGtids,
    ) -> Result<ErrantTransactions, FlavorMismatch> {
        match (self, source) {
            (ServerGtids::Mysql(replica), ServerGtids::Mysql(source)) => {
                Ok(ErrantTransactions::Mysql(replica.subtract(source)))
            }
            (ServerGtids::Mariadb(replica), ServerGtids::Mariadb(source)) => Ok(
                ErrantTransactions::Mariadb(replica.errant_relative_to(source)),
            ),
            _ => Err(FlavorMismatch {
                left: self.flavor(),
                right: source.flavor(),
            }),
        }
    }
}

/// The result of errant-transaction detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrantTransactions {
    /// Exactly the errant transactions.
    Mysql(MysqlGtidSet),
    /// One entry per (domain, server_id) stream holding at least one errant transaction.
    Mariadb(Vec<MariadbErrant>),
}

impl ErrantTransactions {
    pub fn is_empty(&self) -> bool {
        match self {
            ErrantTransactions::Mysql(set) => set.is_empty(),
            ErrantTransactions::Mariadb(list) => list.is_empty(),
        }
    }

    /// The number of errant transactions for MySQL; for MariaDB a lower bound (one per
    /// stream), see [`ErrantTransactions::is_exact`].
    pub fn count_at_least(&self) -> u64 {
        match self {
            ErrantTransactions::Mysql(set) => set.count(),
            ErrantTransactions::Mariadb(list) => list.len() as u64,
        }
    }

    /// Whether [`ErrantTransactions::count_at_least`] is the exact count.
    pub fn is_exact(&self) -> bool {
        matches!(self, ErrantTransactions::Mysql(_))
    }
}

impl fmt::Display for ErrantTransactions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrantTransactions::Mysql(set) => write!(f, "{set}"),
            // Every stream's whole range, not only its last GTID.
            ErrantTransactions::Mariadb(list) => {
                let ranges: Vec<String> = list.iter().map(ToString::to_string).collect();
                f.write_str(&ranges.join(","))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The flavour-neutral value
// ---------------------------------------------------------------------------------------------

/// A server's GTID state as the rest of orch sees it: a MySQL `gtid_executed` set or a
/// MariaDB `gtid_current_pos` position.
///
/// `Display` is the flavour's canonical text. Serde is externally tagged with the canonical
/// text inside (`{"mysql": "uuid:1-5"}`, `{"mariadb": "0-1-100"}`): the text alone cannot
/// say its flavour when it is empty, and a saved plan must not guess.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GtidSet {
    Mysql(MysqlGtidSet),
    Mariadb(MariadbGtidPos),
}

impl GtidSet {
    /// Parses `text` as the given flavour's GTID text.
    pub fn parse(flavor: Flavor, text: &str) -> Result<Self, GtidParseError> {
        Ok(match flavor {
            Flavor::Mysql => GtidSet::Mysql(text.parse()?),
            Flavor::Mariadb => GtidSet::Mariadb(text.parse()?),
        })
    }

    /// The empty state of a flavour (a freshly reset server).
    pub fn empty(flavor: Flavor) -> Self {
        match flavor {
            Flavor::Mysql => GtidSet::Mysql(MysqlGtidSet::new()),
            Flavor::Mariadb => GtidSet::Mariadb(MariadbGtidPos::new()),
        }
    }

    pub fn flavor(&self) -> Flavor {
        match self {
            GtidSet::Mysql(_) => Flavor::Mysql,
            GtidSet::Mariadb(_) => Flavor::Mariadb,
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            GtidSet::Mysql(set) => set.is_empty(),
            GtidSet::Mariadb(pos) => pos.is_empty(),
        }
    }

    fn mismatch(&self, other: &Self) -> FlavorMismatch {
        FlavorMismatch {
            left: self.flavor(),
            right: other.flavor(),
        }
    }

    /// How `self` relates to `other`; the basis of failover candidate choice (a candidate
    /// must not be `Behind` or `Diverged` from the others).
    pub fn compare(&self, other: &Self) -> Result<GtidOrdering, FlavorMismatch> {
        match (self, other) {
            (GtidSet::Mysql(a), GtidSet::Mysql(b)) => Ok(a.compare(b)),
            (GtidSet::Mariadb(a), GtidSet::Mariadb(b)) => Ok(a.compare(b)),
            _ => Err(self.mismatch(other)),
        }
    }

    /// "Does `self` have everything `other` has?" (e.g. has replica R caught up with
    /// source S: `r.contains(&s)`). Exact for MySQL; for MariaDB per domain by `seq_no`, see
    /// [`MariadbGtidPos::includes`].
    pub fn contains(&self, other: &Self) -> Result<bool, FlavorMismatch> {
        match (self, other) {
            (GtidSet::Mysql(a), GtidSet::Mysql(b)) => Ok(b.is_subset(a)),
            (GtidSet::Mariadb(a), GtidSet::Mariadb(b)) => Ok(a.includes(b)),
            _ => Err(self.mismatch(other)),
        }
    }

    /// Everything in either: MySQL the union; MariaDB per domain the later position (what a
    /// replica will have executed once it applied what it received).
    pub fn merged(&self, other: &Self) -> Result<GtidSet, FlavorMismatch> {
        match (self, other) {
            (GtidSet::Mysql(a), GtidSet::Mysql(b)) => Ok(GtidSet::Mysql(a.union(b))),
            (GtidSet::Mariadb(a), GtidSet::Mariadb(b)) => {
                let mut pos = a.clone();
                for g in b.iter() {
                    if pos
                        .get(g.domain_id)
                        .is_none_or(|mine| mine.seq_no < g.seq_no)
                    {
                        pos.insert(*g);
                    }
                }
                Ok(GtidSet::Mariadb(pos))
            }
            _ => Err(self.mismatch(other)),
        }
    }

    /// `self` contains `other` and has more.
    pub fn ahead_of(&self, other: &Self) -> Result<bool, FlavorMismatch> {
        Ok(self.compare(other)? == GtidOrdering::Ahead)
    }

    /// What `self` has that `other` lacks. MySQL: the exact set difference. MariaDB: `self`'s
    /// GTIDs in the domains where `other` is not as far, each meaning "at least this one".
    ///
    /// For a replica and its source this detects errant transactions only on MySQL; a
    /// MariaDB position hides errant writes behind later positions, so use
    /// [`ServerGtids::errant_relative_to`] with the binlog states.
    pub fn missing_from(&self, other: &Self) -> Result<GtidSet, FlavorMismatch> {
        match (self, other) {
            (GtidSet::Mysql(a), GtidSet::Mysql(b)) => Ok(GtidSet::Mysql(a.subtract(b))),
            (GtidSet::Mariadb(a), GtidSet::Mariadb(b)) => Ok(GtidSet::Mariadb(a.missing_from(b))),
            _ => Err(self.mismatch(other)),
        }
    }

    /// How many transactions `self` has that `other` lacks: exact for MySQL, a `seq_no`
    /// estimate for MariaDB ([`MariadbGtidPos::seq_distance`]). Used to rank candidates and
    /// to report lag in transactions.
    pub fn count_missing_from(&self, other: &Self) -> Result<TransactionCount, FlavorMismatch> {
        match (self, other) {
            (GtidSet::Mysql(a), GtidSet::Mysql(b)) => Ok(TransactionCount {
                count: a.subtract(b).count(),
                exact: true,
            }),
            (GtidSet::Mariadb(a), GtidSet::Mariadb(b)) => Ok(TransactionCount {
                count: a.seq_distance(b),
                exact: false,
            }),
            _ => Err(self.mismatch(other)),
        }
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidSet::Mysql(set) => write!(f, "{set}"),
            GtidSet::Mariadb(pos) => write!(f, "{pos}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "896e7882-18fe-11ef-ab88-22222d34d411";
    const MAX: u64 = u64::MAX;

    /// Replaces `U1`/`U2` placeholders so the tables stay readable.
    fn x(s: &str) -> String {
        s.replace("U1", U1).replace("U2", U2)
    }

    fn my(s: &str) -> MysqlGtidSet {
        x(s).parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn pos(s: &str) -> MariadbGtidPos {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn state(s: &str) -> MariadbBinlogState {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn mysql_parse_normalises() {
        let upper = U1.to_uppercase();
        let plain = U1.replace('-', "");
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("  \n\t ", ""),
            ("U1:1-5", "U1:1-5"),
            (&format!("{upper}:1-5"), "U1:1-5"),
            (&format!("{plain}:1-5"), "U1:1-5"),
            (&format!("{{{upper}}}:1-5"), "U1:1-5"),
            ("U1:1-5:7-9", "U1:1-5:7-9"),
            // adjacent and overlapping intervals merge; order does not matter
            ("U1:1-5:6-9", "U1:1-9"),
            ("U1:3-7:1-5", "U1:1-7"),
            ("U1:7-9:1-5", "U1:1-5:7-9"),
            ("U1:1-3:2:3:4", "U1:1-4"),
            ("U1:5-5", "U1:5"),
            ("U1:5", "U1:5"),
            // a uuid repeated, uuids sorted, MySQL's ",\n" between entries
            ("U1:1-3,\nU1:4-6", "U1:1-6"),
            ("U2:1-100,\nU1:1-5", "U1:1-5,U2:1-100"),
            (" U1 : 1 - 5 ,\r\n U2:2 ", "U1:1-5,U2:2"),
            // tags: lower-cased, untagged first, a tag applies to the intervals after it
            ("U1:tag:1-5", "U1:tag:1-5"),
            ("U1:1-5:TagA:1-3:b:7", "U1:1-5:b:7:taga:1-3"),
            ("U1:x:3:1-2", "U1:x:1-3"),
            ("U1:x:1,U1:2,U1:x:2", "U1:2:x:1-2"),
            ("U1:_a1:1", "U1:_a1:1"),
            // huge numbers
            ("U1:1-18446744073709551615", "U1:1-18446744073709551615"),
            ("U1:18446744073709551615", "U1:18446744073709551615"),
            (
                "U1:18446744073709551615:1-18446744073709551614",
                "U1:1-18446744073709551615",
            ),
            ("U1:000001-0005", "U1:1-5"),
        ];
        for (input, want) in cases {
            let input = x(input);
            let got: MysqlGtidSet = input.parse().unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got.to_string(), x(want), "input {input:?}");
            // canonical text parses back to the same value
            assert_eq!(got.to_string().parse::<MysqlGtidSet>().unwrap(), got);
        }
    }

    #[test]
    fn mysql_parse_errors() {
        let long_tag = format!("U1:{}:1", "a".repeat(50));
        // (input, byte offset, fragment, words in the reason)
        let cases: &[(&str, usize, Option<&str>, &str)] = &[
            ("zzz:1", 0, Some("zzz"), "invalid UUID"),
            (
                "3e11fa47-71ca-11e1-9e33-c80aa942956:1",
                0,
                Some("3e11fa47-71ca-11e1-9e33-c80aa942956"),
                "invalid UUID",
            ),
            (
                "3e11fa47x71ca-11e1-9e33-c80aa9429562:1",
                0,
                Some("3e11fa47x71ca-11e1-9e33-c80aa9429562"),
                "invalid UUID",
            ),
            ("{U1:1", 0, Some("{U1"), "invalid UUID"),
            ("U1:5-3", 37, Some("5-3"), "end is before its start"),
            ("U1:0", 37, Some("0"), "start at 1"),
            ("U1:0-3", 37, Some("0-3"), "start at 1"),
            ("U1", 36, None, "expected ':'"),
            ("U1 1-5", 37, Some("1-5"), "expected ':'"),
            ("U1:1-5,", 41, None, "expected a UUID"),
            ("U1:1-5, \n", 43, None, "expected a UUID"),
            ("U1:1-5,,U2:1", 41, Some(","), "expected a UUID"),
            (",U1:1", 0, Some(","), "expected a UUID"),
            ("U1:", 37, None, "expected an interval or a tag"),
            ("U1:1-5:", 41, None, "expected an interval or a tag"),
            ("U1:1-", 39, None, "expected a transaction number"),
            ("U1:-1", 37, Some("-1"), "expected an interval or a tag"),
            (
                "U1:1-18446744073709551616",
                39,
                Some("18446744073709551616"),
                "larger than",
            ),
            (
                "U1:99999999999999999999999",
                37,
                Some("99999999999999999999999"),
                "larger than",
            ),
            ("U1:tag", 37, Some("tag"), "tag has no intervals"),
            ("U1:a:b:1", 37, Some("a"), "tag has no intervals"),
            ("U1:1:tag", 39, Some("tag"), "tag has no intervals"),
            ("U1:ta-g:1", 37, Some("ta-g"), "invalid tag"),
            (
                &long_tag,
                37,
                Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…"),
                "invalid tag",
            ),
            ("U1:1x", 38, Some("x"), "expected ','"),
            (
                "U1:1-5 U2:1",
                41,
                Some("896e7882-18fe-11ef-ab88-22222d34d411"),
                "expected ','",
            ),
            ("U1:1-5é", 40, Some("é"), "expected ','"),
            ("U1:é", 37, Some("é"), "expected an interval or a tag"),
        ];
        for (input, at, fragment, reason) in cases {
            let input = x(input);
            let err = input
                .parse::<MysqlGtidSet>()
                .expect_err(&format!("{input:?} should not parse"));
            assert_eq!(err.position(), *at, "position for {input:?}: {err}");
            assert_eq!(
                err.fragment(),
                fragment.map(x).as_deref(),
                "fragment for {input:?}: {err}"
            );
            assert!(err.reason().contains(reason), "reason for {input:?}: {err}");
            assert!(err.to_string().starts_with("invalid MySQL GTID set: "));
        }
    }

    #[test]
    fn parse_error_display_quotes_fragment_and_position() {
        let err = x("U1:5-3").parse::<MysqlGtidSet>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid MySQL GTID set: interval end is before its start at byte 37: \"5-3\""
        );
        let err = "0-1-".parse::<MariadbGtidPos>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid MariaDB GTID position: expected the sequence number at end of input (byte 4)"
        );
    }

    #[test]
    fn mysql_set_operations() {
        // (a, b, a ∪ b, a ∩ b, a − b, a ⊆ b)
        let cases: &[(&str, &str, &str, &str, &str, bool)] = &[
            ("", "", "", "", "", true),
            ("U1:1-5", "", "U1:1-5", "", "U1:1-5", false),
            ("", "U1:1-5", "U1:1-5", "", "", true),
            ("U1:1-5", "U1:1-5", "U1:1-5", "U1:1-5", "", true),
            ("U1:1-5", "U1:6-9", "U1:1-9", "", "U1:1-5", false),
            ("U1:1-5", "U1:7-9", "U1:1-5:7-9", "", "U1:1-5", false),
            (
                "U1:1-10",
                "U1:3-4:7",
                "U1:1-10",
                "U1:3-4:7",
                "U1:1-2:5-6:8-10",
                false,
            ),
            ("U1:3-4:7", "U1:1-10", "U1:1-10", "U1:3-4:7", "", true),
            (
                "U1:1-5:10-15",
                "U1:4-11",
                "U1:1-15",
                "U1:4-5:10-11",
                "U1:1-3:12-15",
                false,
            ),
            ("U1:1-5", "U2:1-5", "U1:1-5,U2:1-5", "", "U1:1-5", false),
            (
                "U1:1-5,U2:1-3",
                "U1:1-9",
                "U1:1-9,U2:1-3",
                "U1:1-5",
                "U2:1-3",
                false,
            ),
            // a tag is its own stream: U1:t:1 is not U1:1
            ("U1:t:1-3", "U1:1-3", "U1:1-3:t:1-3", "", "U1:t:1-3", false),
            (
                "U1:1-3:t:1",
                "U1:1-5:t:1-2",
                "U1:1-5:t:1-2",
                "U1:1-3:t:1",
                "",
                true,
            ),
            // the top of the GNO range
            (
                "U1:1-18446744073709551615",
                "U1:5",
                "U1:1-18446744073709551615",
                "U1:5",
                "U1:1-4:6-18446744073709551615",
                false,
            ),
            (
                "U1:18446744073709551615",
                "U1:1-18446744073709551614",
                "U1:1-18446744073709551615",
                "",
                "U1:18446744073709551615",
                false,
            ),
            (
                "U1:18446744073709551614-18446744073709551615",
                "U1:18446744073709551615",
                "U1:18446744073709551614-18446744073709551615",
                "U1:18446744073709551615",
                "U1:18446744073709551614",
                false,
            ),
        ];
        for (a, b, union, inter, diff, subset) in cases {
            let (sa, sb) = (my(a), my(b));
            assert_eq!(sa.union(&sb), my(union), "{a} ∪ {b}");
            assert_eq!(sa.intersection(&sb), my(inter), "{a} ∩ {b}");
            assert_eq!(sa.subtract(&sb), my(diff), "{a} − {b}");
            assert_eq!(sa.is_subset(&sb), *subset, "{a} ⊆ {b}");
        }
    }

    #[test]
    fn mysql_count_compare_and_lookup() {
        let cases: &[(&str, u64)] = &[
            ("", 0),
            ("U1:1", 1),
            ("U1:1-5:7-9", 8),
            ("U1:1-5,U2:1-100", 105),
            ("U1:1-5:t:1-5", 10),
            ("U1:1-18446744073709551615", MAX),
            // saturates rather than overflowing
            ("U1:1-18446744073709551615,U2:1-18446744073709551615", MAX),
        ];
        for (s, n) in cases {
            assert_eq!(my(s).count(), *n, "count of {s}");
        }

        use GtidOrdering::*;
        let orderings: &[(&str, &str, GtidOrdering)] = &[
            ("", "", Equal),
            ("U1:1-5", "U1:1-5", Equal),
            ("U1:1-6", "U1:1-5", Ahead),
            ("U1:1-5", "U1:1-6", Behind),
            ("U1:1-5,U2:1", "U1:1-6", Diverged),
            ("U1:1-5", "", Ahead),
        ];
        for (a, b, want) in orderings {
            assert_eq!(my(a).compare(&my(b)), *want, "{a} vs {b}");
            assert_eq!(my(b).compare(&my(a)), want.reverse(), "{b} vs {a}");
        }

        let set = my("U1:1-5:9,U1:t:3");
        let u1: Uuid = U1.parse().unwrap();
        let tagged = Tsid::tagged(u1, Tag::new("T").unwrap());
        assert!(set.contains_gtid(&Tsid::untagged(u1), 1));
        assert!(set.contains_gtid(&Tsid::untagged(u1), 9));
        assert!(!set.contains_gtid(&Tsid::untagged(u1), 6));
        assert!(!set.contains_gtid(&Tsid::untagged(u1), 0));
        assert!(set.contains_gtid(&tagged, 3));
        assert!(!set.contains_gtid(&tagged, 1));
        assert_eq!(set.intervals(&tagged), &[Interval::single(3).unwrap()]);
        assert_eq!(set.iter().count(), 2);
    }

    #[test]
    fn mysql_insert_merges() {
        let u1: Uuid = U1.parse().unwrap();
        let mut set = MysqlGtidSet::new();
        for gno in [3, 1, 2, 5] {
            set.insert(Tsid::untagged(u1), Interval::single(gno).unwrap());
        }
        set.insert(
            Tsid::tagged(u1, Tag::new("a").unwrap()),
            Interval::new(1, MAX).unwrap(),
        );
        assert_eq!(set, my("U1:1-3:5:a:1-18446744073709551615"));
        set.insert(Tsid::untagged(u1), Interval::single(4).unwrap());
        assert_eq!(set.to_string(), x("U1:1-5:a:1-18446744073709551615"));
    }

    #[test]
    fn interval_and_tag_constructors_validate() {
        assert_eq!(Interval::new(0, 1), None);
        assert_eq!(Interval::new(3, 2), None);
        assert_eq!(Interval::new(1, MAX).map(Interval::count), Some(MAX));
        assert!(Tag::new("").is_none());
        assert!(Tag::new("1a").is_none());
        assert!(Tag::new(&"a".repeat(32)).is_some());
        assert!(Tag::new(&"a".repeat(33)).is_none());
        assert_eq!(Tag::new("AbC_9").unwrap().as_str(), "abc_9");
    }

    #[test]
    fn mariadb_position_parse() {
        let ok: &[(&str, &str)] = &[
            ("", ""),
            (" \n", ""),
            ("0-1-100", "0-1-100"),
            ("1-2-5,0-1-100", "0-1-100,1-2-5"),
            (" 0-1-1 ,\n 1-1-2 ", "0-1-1,1-1-2"),
            ("0-1-0", "0-1-0"),
            ("007-01-0100", "7-1-100"),
            (
                "4294967295-4294967295-18446744073709551615",
                "4294967295-4294967295-18446744073709551615",
            ),
        ];
        for (input, want) in ok {
            assert_eq!(pos(input).to_string(), *want, "input {input:?}");
        }

        let bad: &[(&str, usize, Option<&str>, &str)] = &[
            ("0-1-", 4, None, "expected the sequence number"),
            ("0-1", 3, None, "expected '-' after the server id"),
            ("0", 1, None, "expected '-' after the domain id"),
            ("-1-1-1", 0, Some("-1-1-1"), "negative"),
            ("0--1-1", 2, Some("-1-1"), "negative"),
            ("0-1--5", 4, Some("-5"), "negative"),
            ("0-1-1,0-2-5", 6, Some("0-2-5"), "duplicate domain id"),
            (
                "0-2-5,1-1-1,0-1-1",
                12,
                Some("0-1-1"),
                "duplicate domain id",
            ),
            ("0-1-1,", 6, None, "expected a GTID"),
            ("0-1-1,,1-1-1", 6, Some(","), "expected the domain id"),
            (
                "4294967296-1-1",
                0,
                Some("4294967296-1-1"),
                "domain id is larger",
            ),
            (
                "0-4294967296-1",
                2,
                Some("4294967296-1"),
                "server id is larger",
            ),
            (
                "0-1-18446744073709551616",
                4,
                Some("18446744073709551616"),
                "sequence number is larger",
            ),
            ("0-1-1-1", 5, Some("-1"), "expected ','"),
            ("a-1-1", 0, Some("a-1-1"), "expected the domain id"),
            ("0-1-1 0-1-2", 6, Some("0-1-2"), "expected ','"),
            ("0 -1-1", 1, Some(" "), "expected '-'"),
        ];
        for (input, at, fragment, reason) in bad {
            let err = input
                .parse::<MariadbGtidPos>()
                .expect_err(&format!("{input:?} should not parse"));
            assert_eq!(err.position(), *at, "position for {input:?}: {err}");
            assert_eq!(err.fragment(), *fragment, "fragment for {input:?}: {err}");
            assert!(err.reason().contains(reason), "reason for {input:?}: {err}");
        }

        assert_eq!(
            "0-1-5".parse::<MariadbGtid>(),
            Ok(MariadbGtid::new(0, 1, 5))
        );
        assert!("0-1-5,1-1-1".parse::<MariadbGtid>().is_err());
        assert!("".parse::<MariadbGtid>().is_err());
    }

    #[test]
    fn mariadb_binlog_state_parse_and_lookup() {
        // one domain may hold several server ids; within a domain ordered by seq_no so the
        // most recent is listed last, as MariaDB expects when the text is loaded back
        let s = state("1-3-5,0-1-100,0-2-50");
        assert_eq!(s.to_string(), "0-2-50,0-1-100,1-3-5");
        assert_eq!(s.get(0, 1), Some(100));
        assert_eq!(s.get(0, 2), Some(50));
        assert_eq!(s.get(0, 3), None);
        assert_eq!(s.get(1, 3), Some(5));
        assert_eq!(s.most_recent(), pos("0-1-100,1-3-5"));
        assert!(s.includes(&state("0-2-49,1-3-5")));
        assert!(!s.includes(&state("0-2-51")));
        assert!(!s.includes(&state("2-1-1")));
        assert!(s.includes(&MariadbBinlogState::new()));

        let err = "0-1-5,1-1-1,0-1-6"
            .parse::<MariadbBinlogState>()
            .unwrap_err();
        assert_eq!((err.position(), err.fragment()), (12, Some("0-1-6")));
        assert!(err.reason().contains("duplicate domain-server pair"));

        let mut s = MariadbBinlogState::new();
        assert_eq!(s.insert(MariadbGtid::new(0, 1, 10)), None);
        assert_eq!(s.insert(MariadbGtid::new(0, 2, 11)), None);
        assert_eq!(s.insert(MariadbGtid::new(0, 1, 12)), Some(10));
        assert_eq!(s.to_string(), "0-2-11,0-1-12");

        let mut p = MariadbGtidPos::new();
        assert_eq!(p.insert(MariadbGtid::new(1, 1, 1)), None);
        assert_eq!(p.insert(MariadbGtid::new(0, 1, 1)), None);
        assert_eq!(
            p.insert(MariadbGtid::new(1, 2, 2)),
            Some(MariadbGtid::new(1, 1, 1))
        );
        assert_eq!(p.to_string(), "0-1-1,1-2-2");
        assert_eq!(p.get(1), Some(MariadbGtid::new(1, 2, 2)));
        assert_eq!(p.get(2), None);
    }

    #[test]
    fn mariadb_position_comparison() {
        use GtidOrdering::*;
        // (a, b, a compared with b, a.seq_distance(b), a.missing_from(b))
        let cases: &[(&str, &str, GtidOrdering, u64, &str)] = &[
            ("", "", Equal, 0, ""),
            ("0-1-100", "0-1-100", Equal, 0, ""),
            ("0-1-101", "0-1-100", Ahead, 1, "0-1-101"),
            ("0-1-100", "0-1-101", Behind, 0, ""),
            // a new primary (server 2) continued the domain: still one stream by seq_no
            ("0-2-105", "0-1-100", Ahead, 5, "0-2-105"),
            // same seq_no from two servers: two different transactions
            ("0-2-100", "0-1-100", Diverged, 1, "0-2-100"),
            // a domain the other lacks
            ("0-1-100,1-2-5", "0-1-100", Ahead, 5, "1-2-5"),
            ("0-1-100", "0-1-100,1-2-5", Behind, 0, ""),
            ("0-1-100", "", Ahead, 100, "0-1-100"),
            // ahead in one domain, behind in another
            ("0-1-101,1-2-4", "0-1-100,1-2-5", Diverged, 1, "0-1-101"),
            ("0-1-100,1-2-5", "1-2-5", Ahead, 100, "0-1-100"),
            (
                "0-1-18446744073709551615,1-1-18446744073709551615",
                "",
                Ahead,
                MAX,
                "0-1-18446744073709551615,1-1-18446744073709551615",
            ),
        ];
        for (a, b, want, distance, missing) in cases {
            let (pa, pb) = (pos(a), pos(b));
            assert_eq!(pa.compare(&pb), *want, "{a} vs {b}");
            assert_eq!(pb.compare(&pa), want.reverse(), "{b} vs {a}");
            assert_eq!(pa.includes(&pb), want.includes(), "{a} includes {b}");
            assert_eq!(pa.is_ahead_of(&pb), *want == Ahead, "{a} ahead of {b}");
            assert_eq!(pa.seq_distance(&pb), *distance, "{a} beyond {b}");
            assert_eq!(pa.missing_from(&pb), pos(missing), "{a} missing from {b}");
        }
    }

    fn mariadb_server(server_id: u32, current_pos: &str, binlog_state: &str) -> MariadbServerGtids {
        MariadbServerGtids {
            server_id,
            current_pos: pos(current_pos),
            binlog_state: state(binlog_state),
        }
    }

    #[test]
    fn mariadb_errant_transactions() {
        // (replica, source, errant GTIDs, own_write flags)
        struct Case {
            name: &'static str,
            replica: MariadbServerGtids,
            source: MariadbServerGtids,
            errant: &'static [(&'static str, Option<u64>, bool)],
        }
        let cases = [
            Case {
                name: "caught up",
                replica: mariadb_server(2, "0-1-100", "0-1-100"),
                source: mariadb_server(1, "0-1-100", "0-1-100"),
                errant: &[],
            },
            Case {
                name: "lagging replica is not errant",
                replica: mariadb_server(2, "0-1-90", "0-1-90"),
                source: mariadb_server(1, "0-1-100", "0-1-100"),
                errant: &[],
            },
            Case {
                name: "write on the replica, hidden from its position by a later one",
                replica: mariadb_server(2, "0-1-100", "0-2-7,0-1-100"),
                source: mariadb_server(1, "0-1-100", "0-1-100"),
                errant: &[("0-2-7", None, true)],
            },
            Case {
                name: "write on the replica in its own domain",
                replica: mariadb_server(2, "0-1-100,5-2-3", "0-1-100,5-2-3"),
                source: mariadb_server(1, "0-1-100", "0-1-100"),
                errant: &[("5-2-3", None, true)],
            },
            Case {
                name: "former primary: its old writes are known to the source",
                replica: mariadb_server(2, "0-1-100", "0-2-50,0-1-100"),
                source: mariadb_server(1, "0-1-100", "0-2-50,0-1-100"),
                errant: &[],
            },
            Case {
                name: "former primary wrote after being demoted",
                replica: mariadb_server(2, "0-2-101", "0-1-100,0-2-101"),
                source: mariadb_server(1, "0-1-100", "0-2-50,0-1-100"),
                errant: &[("0-2-101", Some(50), true)],
            },
            Case {
                name: "replica got more of the old primary than the new source",
                replica: mariadb_server(3, "0-1-120", "0-1-120"),
                source: mariadb_server(2, "0-1-110", "0-1-110"),
                errant: &[("0-1-120", Some(110), false)],
            },
            Case {
                name: "source without log_slave_updates: its position covers it",
                replica: mariadb_server(3, "0-1-100", "0-1-100"),
                source: mariadb_server(2, "0-1-100", ""),
                errant: &[],
            },
            Case {
                name: "source without log_slave_updates, replica ahead",
                replica: mariadb_server(3, "0-1-101", "0-1-101"),
                source: mariadb_server(2, "0-1-100", ""),
                errant: &[("0-1-101", None, false)],
            },
            Case {
                name: "replica observed after its busy source wrote more: the source's own stream",
                replica: mariadb_server(2, "0-1-130", "0-1-130"),
                source: mariadb_server(1, "0-1-120", "0-1-120"),
                errant: &[],
            },
            Case {
                name: "replica without binlog: nothing can be seen",
                replica: mariadb_server(3, "0-3-5", ""),
                source: mariadb_server(1, "0-1-100", "0-1-100"),
                errant: &[],
            },
        ];
        for case in cases {
            let got = case.replica.errant_relative_to(&case.source);
            let want: Vec<MariadbErrant> = case
                .errant
                .iter()
                .map(|(g, source_seq_no, own_write)| MariadbErrant {
                    gtid: g.parse().unwrap(),
                    source_seq_no: *source_seq_no,
                    own_write: *own_write,
                })
                .collect();
            assert_eq!(got, want, "{}", case.name);

            let result = ServerGtids::Mariadb(case.replica)
                .errant_relative_to(&ServerGtids::Mariadb(case.source))
                .unwrap();
            assert_eq!(result.count_at_least(), want.len() as u64, "{}", case.name);
            assert!(!result.is_exact());
        }
    }

    /// A former primary (server 101) that took writes the new primary (102) never got
    /// names every stream's whole range, not each stream's last GTID: 0-101-369..452 where
    /// the new primary has 0-101 up to 368, a single GTID where the range holds one, from 1
    /// where the new primary has none of that stream.
    #[test]
    fn mariadb_extra_transactions_are_named_as_whole_ranges() {
        let old = mariadb_server(101, "0-101-452", "0-101-452,1-101-7,2-105-30");
        let new = mariadb_server(102, "0-102-500", "0-101-368,0-102-500,1-101-6");
        let extra = ServerGtids::Mariadb(old)
            .errant_relative_to(&ServerGtids::Mariadb(new))
            .unwrap();
        assert_eq!(extra.to_string(), "0-101-369..452,1-101-7,2-105-1..30");
        let one = MariadbErrant {
            gtid: "0-101-452".parse().unwrap(),
            source_seq_no: Some(448),
            own_write: false,
        };
        assert_eq!(one.to_string(), "0-101-449..452");
    }

    #[test]
    fn mysql_errant_transactions() {
        let replica = ServerGtids::Mysql(my("U1:1-100,U2:1-3"));
        let source = ServerGtids::Mysql(my("U1:1-120"));
        let errant = replica.errant_relative_to(&source).unwrap();
        assert_eq!(errant, ErrantTransactions::Mysql(my("U2:1-3")));
        assert_eq!(errant.to_string(), x("U2:1-3"));
        assert_eq!(errant.count_at_least(), 3);
        assert!(errant.is_exact());
        // a lagging replica has nothing errant
        let errant = source.errant_relative_to(&source).unwrap();
        assert!(errant.is_empty());
        let mariadb = ServerGtids::Mariadb(MariadbServerGtids::default());
        assert_eq!(
            replica.errant_relative_to(&mariadb),
            Err(FlavorMismatch {
                left: Flavor::Mysql,
                right: Flavor::Mariadb
            })
        );
    }

    #[test]
    fn gtid_set_umbrella() {
        let r = GtidSet::parse(Flavor::Mysql, &x("U1:1-100,U2:1-3")).unwrap();
        let s = GtidSet::parse(Flavor::Mysql, &x("U1:1-120")).unwrap();
        assert_eq!(r.flavor(), Flavor::Mysql);
        assert_eq!(r.contains(&s), Ok(false));
        assert_eq!(
            s.contains(&GtidSet::parse(Flavor::Mysql, &x("U1:5-9")).unwrap()),
            Ok(true)
        );
        assert_eq!(r.compare(&s), Ok(GtidOrdering::Diverged));
        assert_eq!(s.ahead_of(&GtidSet::empty(Flavor::Mysql)), Ok(true));
        assert_eq!(r.missing_from(&s).unwrap().to_string(), x("U2:1-3"));
        assert_eq!(
            s.count_missing_from(&r),
            Ok(TransactionCount {
                count: 20,
                exact: true
            })
        );

        let a = GtidSet::parse(Flavor::Mariadb, "0-1-120,1-2-5").unwrap();
        let b = GtidSet::parse(Flavor::Mariadb, "0-1-100").unwrap();
        assert_eq!(a.to_string(), "0-1-120,1-2-5");
        assert_eq!(a.contains(&b), Ok(true));
        assert_eq!(a.ahead_of(&b), Ok(true));
        assert_eq!(b.ahead_of(&a), Ok(false));
        assert_eq!(a.missing_from(&b).unwrap().to_string(), "0-1-120,1-2-5");
        assert_eq!(
            a.count_missing_from(&b),
            Ok(TransactionCount {
                count: 25,
                exact: false
            })
        );
        assert!(GtidSet::empty(Flavor::Mariadb).is_empty());

        let mismatch = FlavorMismatch {
            left: Flavor::Mysql,
            right: Flavor::Mariadb,
        };
        assert_eq!(r.contains(&a), Err(mismatch));
        assert_eq!(r.compare(&a), Err(mismatch));
        assert_eq!(r.missing_from(&a), Err(mismatch));
        assert_eq!(
            mismatch.to_string(),
            "cannot compare MySQL GTIDs with MariaDB GTIDs"
        );

        let err = GtidSet::parse(Flavor::Mariadb, &x("U1:1")).unwrap_err();
        assert!(err.to_string().starts_with("invalid MariaDB GTID position"));
    }

    #[test]
    fn serde_uses_canonical_text() {
        let set = my("U2:1-3,U1:6-9:1-5");
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, format!("\"{}\"", x("U1:1-9,U2:1-3")));
        assert_eq!(serde_json::from_str::<MysqlGtidSet>(&json).unwrap(), set);
        assert!(serde_json::from_str::<MysqlGtidSet>(&format!("\"{U1}:5-3\"")).is_err());

        let p = pos("1-1-1,0-1-5");
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"0-1-5,1-1-1\"");
        let err = serde_json::from_str::<MariadbGtidPos>("\"0-1-1,0-2-2\"").unwrap_err();
        assert!(err.to_string().contains("duplicate domain id"), "{err}");

        let s = state("0-1-100,0-2-50");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"0-2-50,0-1-100\"");
        assert_eq!(
            serde_json::from_str::<MariadbBinlogState>("\"0-2-50,0-1-100\"").unwrap(),
            s
        );

        let umbrella = GtidSet::Mariadb(p);
        let json = serde_json::to_string(&umbrella).unwrap();
        assert_eq!(json, r#"{"mariadb":"0-1-5,1-1-1"}"#);
        assert_eq!(serde_json::from_str::<GtidSet>(&json).unwrap(), umbrella);
        let empty = GtidSet::empty(Flavor::Mysql);
        let json = serde_json::to_string(&empty).unwrap();
        assert_eq!(json, r#"{"mysql":""}"#);
        assert_eq!(serde_json::from_str::<GtidSet>(&json).unwrap(), empty);

        let server = ServerGtids::Mariadb(mariadb_server(2, "0-1-5", "0-1-5"));
        let json = serde_json::to_string(&server).unwrap();
        assert_eq!(
            json,
            r#"{"mariadb":{"server_id":2,"current_pos":"0-1-5","binlog_state":"0-1-5"}}"#
        );
        assert_eq!(serde_json::from_str::<ServerGtids>(&json).unwrap(), server);
    }

    // -----------------------------------------------------------------------------------------
    // Properties over random values, with a tiny deterministic PRNG (no extra crates)
    // -----------------------------------------------------------------------------------------

    /// xorshift64: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut v = self.0;
            v ^= v << 13;
            v ^= v >> 7;
            v ^= v << 17;
            self.0 = v;
            v
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len() as u64) as usize]
        }
    }

    fn tsids() -> Vec<Tsid> {
        let (u1, u2) = (U1.parse().unwrap(), U2.parse().unwrap());
        vec![
            Tsid::untagged(u1),
            Tsid::tagged(u1, Tag::new("a").unwrap()),
            Tsid::untagged(u2),
        ]
    }

    /// A random set over small GNOs (so a model of single GTIDs can check it) or, when
    /// `huge`, with intervals near the top of the range.
    fn random_set(rng: &mut Rng, tsids: &[Tsid], huge: bool) -> MysqlGtidSet {
        let mut set = MysqlGtidSet::new();
        for _ in 0..rng.below(6) {
            let start = if huge {
                MAX - rng.below(40)
            } else {
                1 + rng.below(40)
            };
            let len = rng.below(8);
            let end = start.saturating_add(len);
            set.insert(rng.pick(tsids).clone(), Interval::new(start, end).unwrap());
        }
        set
    }

    /// Every (tsid index, gno) of a small set.
    fn model(set: &MysqlGtidSet, tsids: &[Tsid]) -> std::collections::BTreeSet<(usize, u64)> {
        let mut out = std::collections::BTreeSet::new();
        for (tsid, ivs) in set.iter() {
            let t = tsids.iter().position(|x| x == tsid).unwrap();
            for iv in ivs {
                for gno in iv.start()..=iv.end() {
                    out.insert((t, gno));
                }
            }
        }
        out
    }

    fn assert_canonical(set: &MysqlGtidSet) {
        for (_, ivs) in set.iter() {
            assert!(!ivs.is_empty());
            for w in ivs.windows(2) {
                assert!(
                    w[0].end().saturating_add(1) < w[1].start(),
                    "not normalised: {set}"
                );
            }
        }
    }

    #[test]
    fn mysql_set_algebra_laws() {
        let tsids = tsids();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..3000 {
            let huge = round % 4 == 3;
            let a = random_set(&mut rng, &tsids, huge);
            let b = random_set(&mut rng, &tsids, huge);
            let c = random_set(&mut rng, &tsids, huge);
            let ab = a.union(&b);
            assert_eq!(ab, b.union(&a), "union commutes: {a} {b}");
            assert_eq!(ab.union(&c), a.union(&b.union(&c)), "union associates");
            assert!(a.is_subset(&ab) && b.is_subset(&ab), "A ⊆ A∪B");
            assert_eq!(a.intersection(&b), b.intersection(&a), "∩ commutes");
            let a_minus_b = a.subtract(&b);
            assert!(
                a_minus_b.intersection(&b).is_empty(),
                "(A−B) ∩ B = ∅: {a} {b}"
            );
            assert_eq!(a_minus_b.union(&a.intersection(&b)), a, "(A−B) ∪ (A∩B) = A");
            assert_eq!(
                a.is_subset(&b),
                a_minus_b.is_empty(),
                "⊆ iff A−B = ∅: {a} {b}"
            );
            assert_eq!(
                a.to_string().parse::<MysqlGtidSet>().unwrap(),
                a,
                "round trip"
            );
            assert_eq!(
                a.count(),
                a_minus_b.count() + a.intersection(&b).count(),
                "count splits"
            );
            for v in [&ab, &a_minus_b, &a.intersection(&b)] {
                assert_canonical(v);
            }
            if !huge {
                let (ma, mb) = (model(&a, &tsids), model(&b, &tsids));
                assert_eq!(model(&ab, &tsids), &ma | &mb, "union model: {a} {b}");
                assert_eq!(model(&a.intersection(&b), &tsids), &ma & &mb, "∩ model");
                assert_eq!(model(&a_minus_b, &tsids), &ma - &mb, "− model: {a} {b}");
                assert_eq!(a.is_subset(&b), ma.is_subset(&mb), "⊆ model");
                assert_eq!(a.count(), ma.len() as u64, "count model");
            }
        }
    }

    fn random_pos(rng: &mut Rng) -> MariadbGtidPos {
        let mut p = MariadbGtidPos::new();
        for _ in 0..rng.below(4) {
            let seq = if rng.below(8) == 0 {
                MAX - rng.below(3)
            } else {
                rng.below(6)
            };
            p.insert(MariadbGtid::new(
                rng.below(3) as u32,
                1 + rng.below(2) as u32,
                seq,
            ));
        }
        p
    }

    #[test]
    fn mariadb_position_laws() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        for _ in 0..3000 {
            let (a, b, c) = (
                random_pos(&mut rng),
                random_pos(&mut rng),
                random_pos(&mut rng),
            );
            assert_eq!(
                a.to_string().parse::<MariadbGtidPos>().unwrap(),
                a,
                "round trip"
            );
            assert_eq!(a.compare(&a), GtidOrdering::Equal);
            assert_eq!(a.compare(&b), b.compare(&a).reverse(), "{a} vs {b}");
            assert_eq!(
                b.missing_from(&a).is_empty(),
                a.includes(&b),
                "includes iff nothing missing: {a} {b}"
            );
            if a.includes(&b) && b.includes(&c) {
                assert!(a.includes(&c), "includes is transitive: {a} {b} {c}");
            }
            if a.compare(&b) == GtidOrdering::Equal {
                assert_eq!(a, b);
            }

            let mut st = MariadbBinlogState::new();
            for g in a.iter().chain(b.iter()) {
                st.insert(*g);
            }
            assert_eq!(
                st.to_string().parse::<MariadbBinlogState>().unwrap(),
                st,
                "round trip"
            );
            assert!(st.includes(&st));
        }
    }

    // -----------------------------------------------------------------------------------------
    // No input panics
    // -----------------------------------------------------------------------------------------

    fn parse_everything(input: &str) {
        if let Ok(set) = input.parse::<MysqlGtidSet>() {
            assert_eq!(
                set.to_string().parse::<MysqlGtidSet>().unwrap(),
                set,
                "{input:?}"
            );
        }
        if let Ok(p) = input.parse::<MariadbGtidPos>() {
            assert_eq!(
                p.to_string().parse::<MariadbGtidPos>().unwrap(),
                p,
                "{input:?}"
            );
        }
        if let Ok(s) = input.parse::<MariadbBinlogState>() {
            assert_eq!(
                s.to_string().parse::<MariadbBinlogState>().unwrap(),
                s,
                "{input:?}"
            );
        }
        if let Err(err) = input.parse::<MariadbGtid>() {
            let _ = err.to_string();
        }
        if let Err(err) = input.parse::<Uuid>() {
            let _ = err.to_string();
        }
        for flavor in [Flavor::Mysql, Flavor::Mariadb] {
            match GtidSet::parse(flavor, input) {
                Ok(v) => assert_eq!(GtidSet::parse(flavor, &v.to_string()).unwrap(), v),
                Err(err) => {
                    assert!(err.position() <= input.len());
                    let _ = err.to_string();
                }
            }
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        // raw bytes, lossily made text
        for _ in 0..2000 {
            let len = rng.below(64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            parse_everything(&String::from_utf8_lossy(&bytes));
        }
        // text from the GTID alphabet, which gets much deeper into the parsers
        let alphabet: Vec<char> = "0123456789abcdefABCDEF-:,_ \n{}xé".chars().collect();
        for _ in 0..4000 {
            let len = rng.below(48) as usize;
            let s: String = (0..len).map(|_| *rng.pick(&alphabet)).collect();
            parse_everything(&s);
        }
        // valid values with one character changed, dropped or inserted
        let seeds = [
            x("U1:1-5:7-9:tag:3,\nU2:1-18446744073709551615"),
            "0-1-100,1-2-18446744073709551615,4294967295-4294967295-5".to_string(),
        ];
        for _ in 0..4000 {
            let mut chars: Vec<char> = rng.pick(&seeds).chars().collect();
            let at = rng.below(chars.len() as u64) as usize;
            match rng.below(3) {
                0 => chars[at] = *rng.pick(&alphabet),
                1 => {
                    chars.remove(at);
                }
                _ => chars.insert(at, *rng.pick(&alphabet)),
            }
            parse_everything(&chars.into_iter().collect::<String>());
        }
    }
}
