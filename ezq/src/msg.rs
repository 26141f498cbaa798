//! Messages: [`Msg`] and its compact [`Kind`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{OnceLock, RwLock};

/// One message on a queue: the `data`, a `kind` to tell kinds of work apart,
/// and an `order` that [`sortiter`](crate::sortiter) uses to restore sequence.
///
/// `Msg::new(data)` has the empty kind and order 0; the builder methods set
/// the others. Plain data converts into a message (`From<T>`), so every
/// function that takes `impl Into<Msg<T>>` takes either.
///
/// ```
/// use ezq::Msg;
///
/// let msg = Msg::new(21u64).kind("EVEN").order(7);
/// assert!(msg.kind == "EVEN");
/// assert_eq!((msg.data, msg.order), (21, 7));
///
/// let plain: Msg<u64> = 5.into();
/// assert!(plain.kind.is_empty());
/// assert_eq!(plain.order, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Msg<T> {
    /// The payload.
    pub data: T,
    /// What kind of message this is; empty unless set with [`Msg::kind`].
    pub kind: Kind,
    /// The message's position in a sequence; 0 unless set with [`Msg::order`].
    pub order: u64,
}

impl<T> Msg<T> {
    /// A message carrying `data`, with the empty kind and order 0.
    pub fn new(data: T) -> Self {
        Msg {
            data,
            kind: Kind::EMPTY,
            order: 0,
        }
    }

    /// Sets the kind: a string literal, a `&str` or a `String`.
    ///
    /// Kinds of up to 7 bytes are stored inline and never allocate; longer
    /// kinds are interned once per distinct string.
    #[must_use]
    pub fn kind(mut self, kind: impl Into<Kind>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Sets the order.
    #[must_use]
    pub fn order(mut self, order: u64) -> Self {
        self.order = order;
        self
    }

    /// Replaces the data, keeping the kind and the order.
    ///
    /// ```
    /// let squared = ezq::Msg::new(3u64).order(4).map(|x| x * x);
    /// assert_eq!((squared.data, squared.order), (9, 4));
    /// ```
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Msg<U> {
        Msg {
            data: f(self.data),
            kind: self.kind,
            order: self.order,
        }
    }
}

impl<T> From<T> for Msg<T> {
    fn from(data: T) -> Self {
        Msg::new(data)
    }
}

/// The kind of a [`Msg`]: a string, stored in 8 bytes.
///
/// Short kinds (up to 7 bytes, such as `"EVEN"` or `"ODD"`) live inline;
/// longer ones are interned in a process-wide table that only grows by one
/// entry per distinct long kind. Either way a kind is `Copy`, compares in
/// one step and keeps [`Msg`] small, which matters because every message
/// carries one.
///
/// ```
/// use ezq::Kind;
///
/// let k = Kind::from("ODD");
/// assert!(k == "ODD");
/// assert_eq!(k.as_str(), "ODD");
/// assert_eq!(Kind::from(String::from("a rather long kind")), "a rather long kind");
/// assert_eq!(std::mem::size_of::<Kind>(), 8);
/// ```
// One aligned word with no invalid bit patterns: a message is then copied
// in and out of a channel slot as whole words. A byte-sized enum tag here
// (a niche) made the compiler copy messages piecewise at odd offsets, and
// that made every channel hop several times slower.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C, align(8))]
pub struct Kind {
    /// The string's bytes, zero-filled, then its length in the last byte;
    /// or an interned id in the first four bytes and [`INTERNED`].
    bytes: [u8; 8],
}

/// The last byte of an interned kind.
const INTERNED: u8 = 0xff;

/// The longest kind stored inline.
const INLINE_MAX: usize = 7;

impl Kind {
    /// The empty kind, the default of every message.
    pub const EMPTY: Kind = Kind { bytes: [0; 8] };

    fn tag(&self) -> u8 {
        self.bytes[INLINE_MAX]
    }

    /// The kind as a string slice.
    pub fn as_str(&self) -> &str {
        match self.tag() {
            INTERNED => {
                let [a, b, c, d, ..] = self.bytes;
                interned(u32::from_le_bytes([a, b, c, d]))
            }
            len => {
                // Inline bytes always come from a `&str` cut at its full length.
                std::str::from_utf8(&self.bytes[..usize::from(len)]).unwrap_or_default()
            }
        }
    }

    /// Whether this is the empty kind.
    pub fn is_empty(&self) -> bool {
        *self == Kind::EMPTY
    }

    #[inline]
    fn inline(s: &str) -> Option<Kind> {
        let b = s.as_bytes();
        let n = b.len();
        if n > INLINE_MAX {
            return None;
        }
        // Two overlapping loads instead of a copy of `n` bytes: the kind is
        // built in a register. (A byte copy became a call to `memcpy`
        // followed by a stalled reload, on every message a worker made.)
        let word = if n >= 4 {
            let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]);
            u64::from(lo) | u64::from(hi) << (8 * (n - 4))
        } else if n >= 2 {
            let lo = u16::from_le_bytes([b[0], b[1]]);
            let hi = u16::from_le_bytes([b[n - 2], b[n - 1]]);
            u64::from(lo) | u64::from(hi) << (8 * (n - 2))
        } else {
            b.first().map_or(0, |&c| u64::from(c))
        };
        let word = word | (n as u64) << (8 * INLINE_MAX);
        Some(Kind {
            bytes: word.to_le_bytes(),
        })
    }

    fn new(s: &str) -> Kind {
        Kind::inline(s).unwrap_or_else(|| {
            let [a, b, c, d] = intern(s).to_le_bytes();
            Kind {
                bytes: [a, b, c, d, 0, 0, 0, INTERNED],
            }
        })
    }
}

impl Default for Kind {
    fn default() -> Self {
        Kind::EMPTY
    }
}

impl From<&str> for Kind {
    fn from(s: &str) -> Self {
        Kind::new(s)
    }
}

impl From<String> for Kind {
    fn from(s: String) -> Self {
        Kind::new(&s)
    }
}

impl From<&String> for Kind {
    fn from(s: &String) -> Self {
        Kind::new(s)
    }
}

impl PartialEq<str> for Kind {
    fn eq(&self, other: &str) -> bool {
        match Kind::inline(other) {
            Some(short) => *self == short,
            None => self.tag() == INTERNED && self.as_str() == other,
        }
    }
}

impl PartialEq<&str> for Kind {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for Kind {
    fn eq(&self, other: &String) -> bool {
        *self == **other
    }
}

impl PartialEq<Kind> for &str {
    fn eq(&self, other: &Kind) -> bool {
        *other == **self
    }
}

impl PartialEq<Kind> for str {
    fn eq(&self, other: &Kind) -> bool {
        *other == *self
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[derive(Default)]
struct Interner {
    ids: HashMap<&'static str, u32>,
    names: Vec<&'static str>,
}

fn interner() -> &'static RwLock<Interner> {
    static INTERNER: OnceLock<RwLock<Interner>> = OnceLock::new();
    INTERNER.get_or_init(Default::default)
}

fn intern(s: &str) -> u32 {
    if let Some(&id) = interner()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .ids
        .get(s)
    {
        return id;
    }
    let mut table = interner().write().unwrap_or_else(|e| e.into_inner());
    if let Some(&id) = table.ids.get(s) {
        return id;
    }
    let id = u32::try_from(table.names.len()).expect("more than 4 billion distinct long kinds");
    // Leaked on purpose: one allocation per distinct long kind, for the
    // life of the process, so that `as_str` can hand out `&'static str`.
    let name: &'static str = Box::leak(s.to_owned().into_boxed_str());
    table.names.push(name);
    table.ids.insert(name, id);
    id
}

fn interned(id: u32) -> &'static str {
    interner().read().unwrap_or_else(|e| e.into_inner()).names[id as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_interned_kinds_round_trip() {
        // Every inline length (the bytes are packed differently for each),
        // then the interned ones.
        for s in [
            "",
            "E",
            "OK",
            "ODD",
            "EVEN",
            "12345",
            "123456",
            "1234567",
            "12345678",
            "a much longer kind name",
        ] {
            let k = Kind::from(s);
            assert_eq!(k.as_str(), s);
            assert!(k == s);
            assert!(s == k);
            assert_eq!(k, Kind::from(s.to_string()));
        }
    }

    #[test]
    fn different_kinds_differ() {
        assert!(Kind::from("EVEN") != "ODD");
        assert!(Kind::from("EVEN") != "EVEN ");
        assert!(Kind::from("a much longer kind") != "a much longer kine");
        assert!(Kind::from("a much longer kind") != "short");
        assert_ne!(Kind::from("12345678"), Kind::from("1234567"));
    }

    #[test]
    fn messages_stay_compact() {
        assert_eq!(std::mem::size_of::<Kind>(), 8);
        assert_eq!(std::mem::size_of::<Msg<u64>>(), 24);
    }

    #[test]
    fn kinds_of_every_inline_length_differ() {
        let kinds: Vec<Kind> = (0..=7).map(|n| Kind::from(&"abcdefg"[..n])).collect();
        for (i, a) in kinds.iter().enumerate() {
            assert_eq!(a.as_str().len(), i);
            for b in &kinds[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(Kind::from("").is_empty());
        assert!(!Kind::from("a much longer kind").is_empty());
    }

    #[test]
    fn builder_sets_fields() {
        let m = Msg::new("x").kind("ODD").order(3);
        assert_eq!(m.data, "x");
        assert_eq!(m.kind, "ODD");
        assert_eq!(m.order, 3);
        let d: Msg<&str> = "y".into();
        assert_eq!(d, Msg::new("y"));
    }
}
