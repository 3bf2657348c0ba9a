//! Maven artifact versions, ordered as Maven's `ComparableVersion` orders them
//! (`org.apache.maven.artifact.versioning.ComparableVersion`, maven-artifact 3.8.7, with
//! MNG-6964 and MNG-7644):
//!
//! - The version is lower-cased and split into items at `.` and `-`, and wherever digits and
//!   letters meet (`1rc2` is `1-rc-2`); `-` (and a digit/letter change) opens a nested list,
//!   and so does a qualifier after other items (`1.0.x1` reads as `1.0-x-1`). An empty item
//!   (`1..2`, `1-`) is `0`.
//! - Numbers compare numerically (any size). Qualifiers order
//!   `alpha < beta < milestone < rc = cr < snapshot < "" = ga = final = release < sp`, then
//!   unknown qualifiers, alphabetically; `a`, `b`, `m` directly followed by a digit mean
//!   alpha, beta, milestone.
//! - Trailing "null" items (`0`, `""`, `ga`, `final`, `release`, empty lists) are dropped
//!   from each list, so `1.0.0 = 1 = 1-ga`.
//! - Comparing kinds: a number is newer than a qualifier and than a list; a list is newer
//!   than a qualifier; a missing item compares as null (so `1-sp > 1`, `1-rc < 1`).
//!
//! Maven accepts any string; the only error is an empty one. This is the one ecosystem here
//! whose parse allocates (the nested item lists); comparisons do not.

use std::cmp::Ordering;

/// Why a string is not a Maven version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The empty string.
    #[error("empty maven version")]
    Empty,
}

/// One item of a parsed version.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// Significant digits of a number (`""` is zero).
    Int(String),
    /// A qualifier: its rank among the known ones (`0..=6`), or 7 with its text.
    Str(u8, String),
    /// A nested list (after `-`, or where digits and letters meet).
    List(Vec<Item>),
}

/// Rank of `""` (release) among the known qualifiers.
const RELEASE: u8 = 5;
/// Rank of every unknown qualifier (then ordered by text).
const UNKNOWN: u8 = 7;

impl Item {
    fn string(s: &str, followed_by_digit: bool) -> Item {
        let s = if followed_by_digit && s.len() == 1 {
            match s {
                "a" => "alpha",
                "b" => "beta",
                "m" => "milestone",
                other => other,
            }
        } else {
            s
        };
        let rank = match s {
            "alpha" => 0,
            "beta" => 1,
            "milestone" => 2,
            "rc" | "cr" => 3,
            "snapshot" => 4,
            "" | "ga" | "final" | "release" => RELEASE,
            "sp" => 6,
            _ => UNKNOWN,
        };
        Item::Str(
            rank,
            if rank == UNKNOWN {
                s.to_owned()
            } else {
                String::new()
            },
        )
    }

    fn int(digits: &str) -> Item {
        Item::Int(digits.trim_start_matches('0').to_owned())
    }

    fn is_null(&self) -> bool {
        match self {
            Item::Int(d) => d.is_empty(),
            Item::Str(r, _) => *r == RELEASE,
            Item::List(l) => l.is_empty(),
        }
    }

    /// `ComparableVersion`'s `Item.compareTo`, with `None` for a missing item.
    fn cmp_opt(&self, other: Option<&Item>) -> Ordering {
        match (self, other) {
            (Item::Int(d), None) => {
                if d.is_empty() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                }
            }
            (Item::Str(r, s), None) => str_key(*r, s).cmp(&str_key(RELEASE, "")),
            // MNG-6964: the whole list against null, not just its first item.
            (Item::List(l), None) => l
                .iter()
                .map(|i| i.cmp_opt(None))
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal),
            (Item::Int(a), Some(Item::Int(b))) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
            (Item::Int(_), Some(_)) => Ordering::Greater,
            (Item::Str(..), Some(Item::Int(_) | Item::List(_))) => Ordering::Less,
            (Item::Str(r, s), Some(Item::Str(q, t))) => str_key(*r, s).cmp(&str_key(*q, t)),
            (Item::List(_), Some(Item::Int(_))) => Ordering::Less,
            (Item::List(_), Some(Item::Str(..))) => Ordering::Greater,
            (Item::List(a), Some(Item::List(b))) => list_cmp(a, b),
        }
    }
}

/// Known qualifiers by rank, unknown ones after them by text.
fn str_key(rank: u8, text: &str) -> (u8, &str) {
    (rank, text)
}

fn list_cmp(a: &[Item], b: &[Item]) -> Ordering {
    let n = a.len().max(b.len());
    for i in 0..n {
        let o = match (a.get(i), b.get(i)) {
            (Some(x), y) => x.cmp_opt(y),
            (None, Some(y)) => y.cmp_opt(None).reverse(),
            (None, None) => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// `ListItem.normalize`: drop null items from the end, looking past non-null lists.
fn normalize(list: &mut Vec<Item>) {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if list[i].is_null() {
            list.remove(i);
        } else if !matches!(list[i], Item::List(_)) {
            break;
        }
    }
}

/// A parsed Maven version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    items: Vec<Item>,
}

impl Version {
    /// Parses as `ComparableVersion.parseVersion` does.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        let v = s.to_lowercase();
        // The open lists, innermost last; each is attached to its parent when closed.
        let mut stack: Vec<Vec<Item>> = vec![Vec::new()];
        let mut is_digit = false;
        let mut start = 0usize;
        let item = |digit: bool, text: &str| {
            if digit {
                Item::int(text)
            } else {
                Item::string(text, false)
            }
        };
        for (i, c) in v.char_indices() {
            let top = stack.len() - 1;
            if c == '.' {
                stack[top].push(if i == start {
                    Item::Int(String::new())
                } else {
                    item(is_digit, &v[start..i])
                });
                start = i + 1;
            } else if c == '-' {
                stack[top].push(if i == start {
                    Item::Int(String::new())
                } else {
                    item(is_digit, &v[start..i])
                });
                start = i + 1;
                stack.push(Vec::new());
            } else if c.is_ascii_digit() {
                if !is_digit && i > start {
                    // MNG-7644: `1.0.0.X1 < 1.0.0-X2`; a qualifier after other items opens a
                    // list, as if written after `-`.
                    if !stack[top].is_empty() {
                        stack.push(Vec::new());
                    }
                    let top = stack.len() - 1;
                    stack[top].push(Item::string(&v[start..i], true));
                    start = i;
                    stack.push(Vec::new());
                }
                is_digit = true;
            } else {
                if is_digit && i > start {
                    stack[top].push(Item::int(&v[start..i]));
                    start = i;
                    stack.push(Vec::new());
                }
                is_digit = false;
            }
        }
        if v.len() > start {
            // MNG-7644 again, for a trailing qualifier.
            if !is_digit && !stack[stack.len() - 1].is_empty() {
                stack.push(Vec::new());
            }
            let top = stack.len() - 1;
            stack[top].push(item(is_digit, &v[start..]));
        }
        // Close the lists from the innermost out, normalising each (as Maven pops its stack).
        while stack.len() > 1 {
            let mut inner = stack.pop().unwrap_or_default();
            normalize(&mut inner);
            if let Some(parent) = stack.last_mut() {
                parent.push(Item::List(inner));
            }
        }
        let mut items = stack.pop().unwrap_or_default();
        normalize(&mut items);
        Ok(Version { items })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        list_cmp(&self.items, &other.items)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Parses both and compares them as `ComparableVersion.compareTo` does.
pub fn compare(a: &str, b: &str) -> Result<Ordering, ParseError> {
    Ok(Version::parse(a)?.cmp(&Version::parse(b)?))
}
