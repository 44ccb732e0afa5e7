//! Redis key layout: escaping of user-supplied parts, the per-user hash tag,
//! hashing of parts too long to keep.
//!
//! An entry lives at `{prefix}:{fn_id}:v{version}:s{shape}:{user_tag}:{key}`
//! where `shape` is the fingerprint of the stored type's shape in hex (two
//! builds that store different shapes keep apart entries), and `user_tag`
//! is `{u:<user>}` (a Redis hash tag, so one user's entries and
//! generation share a cluster slot) or `g` for global entries. Methods add
//! `@{Self type}:` before `user_tag`, since the attribute cannot see the impl.
//! The user's generation lives at `{prefix}:gen:{user_tag}`, a function's
//! at `{prefix}:fgen:{fn_id}`, a tag's at `{prefix}:tgen:{tag}`.
//!
//! Every user-supplied string is escaped: `%`, `:`, `{`, `}`, `#` and the
//! characters of the function's key template become `%XX`. Escaping is
//! injective and leaves no separator raw, so two different (function, user,
//! key) triples never meet at one Redis key. A user longer than
//! [`MAX_USER_LEN`] escaped bytes becomes `{h:<sha256>}`, a key longer than
//! [`MAX_KEY_LEN`] becomes `#<sha256>`: hashed, never truncated.
//!
//! An argument that is `Serialize` but not `Display` (a query struct, a JSON
//! body) enters the key as `#` and the first 128 bits, in hex, of the SHA-256
//! of its JSON form with every object's keys sorted: equal values (maps
//! whatever their order, structs whatever their field order) give the same
//! key in every process and build, and no escaped `Display` value can
//! contain a raw `#`.

use std::fmt::{self, Display, Write};
use std::sync::LazyLock;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Longest escaped user kept readable inside the hash tag.
pub(crate) const MAX_USER_LEN: usize = 128;
/// Longest escaped key part kept readable.
pub(crate) const MAX_KEY_LEN: usize = 256;

/// Most tags one function's entries carry: each is one more key read by a
/// lookup that tracking does not answer, and on a cluster each tag is
/// written to every slot when it is invalidated.
pub const MAX_TAGS: usize = 4;

const ALWAYS_ESCAPED: &str = "%:{}#";

/// The Redis keys of one cached call: the entry's, its user's
/// generation's, its function's generation's and its tags' generations',
/// kept in one buffer so a call allocates once for all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryKey {
    keys: String,
    entry_len: usize,
    generation_end: usize,
    function_end: usize,
    /// Where each tag's generation key ends, the first `tags` of them.
    tag_ends: [u32; MAX_TAGS],
    tags: u8,
    /// Where `v{version}:s{shape}` is in the entry's key.
    shape: (usize, usize),
}

impl EntryKey {
    /// The key the entry is stored under.
    pub fn entry(&self) -> &str {
        &self.keys[..self.entry_len]
    }

    /// The key of the owning user's generation; `None` for global entries.
    pub fn generation(&self) -> Option<&str> {
        Some(&self.keys[self.entry_len..self.generation_end]).filter(|key| !key.is_empty())
    }

    /// The key of the function's generation, which
    /// [`invalidate_function`](crate::Cache::invalidate_function) replaces.
    pub fn function_generation(&self) -> &str {
        &self.keys[self.generation_end..self.function_end]
    }

    /// The keys of the generations of the entry's tags, which
    /// [`invalidate_tag`](crate::Cache::invalidate_tag) replaces.
    pub(crate) fn tag_generations(&self) -> impl ExactSizeIterator<Item = &str> + Clone {
        let ends = &self.tag_ends[..usize::from(self.tags)];
        (0..ends.len()).map(move |at| {
            let start = at
                .checked_sub(1)
                .map_or(self.function_end, |before| ends[before] as usize);
            &self.keys[start..ends[at] as usize]
        })
    }

    /// Whether the entry carries tags.
    pub(crate) fn has_tags(&self) -> bool {
        self.tags > 0
    }

    /// `v{version}:s{shape}`: which build's entries the key is among.
    pub(crate) fn shape(&self) -> &str {
        &self.keys[self.shape.0..self.shape.1]
    }

    /// The key of this entry as a build that stores `shape` (as
    /// [`shape`](Self::shape) gives it) writes it.
    pub(crate) fn entry_of_shape(&self, shape: &str) -> String {
        let entry = self.entry();
        [&entry[..self.shape.0], shape, &entry[self.shape.1..]].concat()
    }

    /// The key of the set of shapes the function's entries are stored in:
    /// `{prefix}:shapes:{fn_id}`.
    pub(crate) fn shapes(&self) -> String {
        let (prefix, id) = self
            .function_generation()
            .rsplit_once(":fgen:")
            .expect("a function generation key");
        format!("{prefix}:shapes:{id}")
    }
}

/// A primitive integer of 64 bits or fewer, as a key part or a user id:
/// written as its digits directly, the text its `Display` form gives, where
/// `fmt` was a sixth of an in-process hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integer {
    /// An unsigned integer.
    Unsigned(u64),
    /// A signed integer.
    Signed(i64),
}

impl Integer {
    /// Writes the integer, escaping what `reserved` holds as values are.
    fn write_to(self, out: &mut String, reserved: &str) {
        let (negative, mut magnitude) = match self {
            Integer::Unsigned(n) => (false, n),
            Integer::Signed(n) => (n < 0, n.unsigned_abs()),
        };
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (magnitude % 10) as u8;
            magnitude /= 10;
            if magnitude == 0 {
                break;
            }
        }
        let digits = &digits[start..];
        // A template may reserve digits or `-` (`"v2-{id}"`); users and
        // most templates do not, and then there is nothing to screen.
        if reserved
            .bytes()
            .any(|byte| byte.is_ascii_digit() || byte == b'-')
        {
            let mut escaper = Escaper::new(out, reserved);
            if negative {
                let _ = escaper.write_str("-");
            }
            let _ = escaper.write_str(std::str::from_utf8(digits).expect("ASCII digits"));
        } else {
            if negative {
                out.push('-');
            }
            out.extend(digits.iter().map(|&digit| char::from(digit)));
        }
    }
}

/// The owner of an entry, as the generated code hands it over.
#[derive(Clone, Copy)]
pub enum UserId<'a> {
    /// An integer id.
    Integer(Integer),
    /// Any other id, by its `Display` form.
    Display(&'a dyn Display),
}

impl UserId<'_> {
    fn write_to(self, out: &mut String) {
        match self {
            UserId::Integer(id) => id.write_to(out, ""),
            UserId::Display(id) => escape_display(out, id, ""),
        }
    }
}

/// Builds an [`EntryKey`] from the parts the generated code hands over.
///
/// The macro writes the template's literal text with [`literal`](Self::literal)
/// and each captured argument with [`value`](Self::value); values are escaped
/// as they are formatted, without an intermediate `String`.
pub struct KeyWriter {
    buf: String,
    prefix_len: usize,
    /// Where the function's escaped id is in the key (its version and the
    /// rest of the segment after it): versions share one function generation.
    segment: (usize, usize),
    /// Where `v{version}:s{shape}` is in the key.
    shape: (usize, usize),
    tag: Option<(usize, usize)>,
    key_start: usize,
    /// Where each tag's text starts, after the key's: see [`tag`](Self::tag).
    tag_starts: Vec<usize>,
    reserved: &'static str,
    /// Set when an argument could not be serialized: the call runs uncached.
    failed: bool,
}

impl KeyWriter {
    /// Starts a key under `prefix` and the function's `id_segment`
    /// (`{id}:v{version}:s{shape}:` for entries), for a method of `owner` if
    /// it is one, owned by `user` when there is one; `reserved` is escaped
    /// inside values.
    pub(crate) fn new(
        prefix: &str,
        id_segment: &str,
        owner: Option<&str>,
        reserved: &'static str,
        user: Option<UserId<'_>>,
    ) -> KeyWriter {
        let mut buf = String::with_capacity(2 * (prefix.len() + id_segment.len()) + 64);
        buf.push_str(prefix);
        buf.push(':');
        // Ids are escaped, so the first `:` ends the id.
        let id_len = id_segment.find(':').unwrap_or(id_segment.len());
        let segment = (buf.len(), buf.len() + id_len);
        buf.push_str(id_segment);
        let shape_start = (segment.1 + 1).min(buf.len());
        let shape_at = (shape_start, buf.len().saturating_sub(1).max(shape_start));
        if let Some(owner) = owner {
            buf.push('@');
            escape_str(&mut buf, owner);
            buf.push(':');
        }
        let tag = user.map(|user| {
            let start = buf.len();
            buf.push_str("{u:");
            user.write_to(&mut buf);
            if buf.len() - (start + 3) > MAX_USER_LEN {
                let digest = hex_sha256(&buf[start + 3..]);
                buf.truncate(start);
                buf.push_str("{h:");
                buf.push_str(&digest);
            }
            buf.push('}');
            (start, buf.len())
        });
        if tag.is_none() {
            buf.push('g');
        }
        buf.push(':');
        let key_start = buf.len();
        KeyWriter {
            buf,
            prefix_len: prefix.len(),
            segment,
            shape: shape_at,
            tag,
            key_start,
            tag_starts: Vec::new(),
            reserved,
            failed: false,
        }
    }

    /// Appends fixed text of the key template, as it is.
    pub fn literal(&mut self, text: &str) -> &mut Self {
        self.buf.push_str(text);
        self
    }

    /// Appends an argument, escaped.
    pub fn value(&mut self, value: &dyn Display) -> &mut Self {
        escape_display(&mut self.buf, value, self.reserved);
        self
    }

    /// Appends an integer argument, escaped: the same text as
    /// [`value`](Self::value) gives it.
    pub fn integer(&mut self, value: Integer) -> &mut Self {
        value.write_to(&mut self.buf, self.reserved);
        self
    }

    /// Ends the key (or the tag before) and starts a tag of the entry: what
    /// [`tag_literal`](Self::tag_literal) and [`tag_value`](Self::tag_value)
    /// write next is the tag's text. A tag is its text, whichever function
    /// writes it, so its parts are not escaped by any template: the text is
    /// escaped whole into its generation's key.
    pub fn tag(&mut self) -> &mut Self {
        self.tag_starts.push(self.buf.len());
        self
    }

    /// Appends fixed text of a tag template.
    pub fn tag_literal(&mut self, text: &str) -> &mut Self {
        escape_str(&mut self.buf, text);
        self
    }

    /// Appends an argument to a tag, as its `Display` form writes it.
    pub fn tag_value(&mut self, value: &dyn Display) -> &mut Self {
        escape_display(&mut self.buf, value, "");
        self
    }

    /// Appends a digest of `value`'s serialized (JSON) form, for arguments
    /// that have no `Display` form. Objects are written with their keys
    /// sorted, so that equal maps (a `HashMap`, whose order differs from
    /// one map to the next) give one digest.
    pub fn digest<T: Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        let mut hasher = HashWriter(Sha256::new());
        let written =
            serde_json::to_value(value).and_then(|value| write_canonical(&mut hasher, &value));
        match written {
            Ok(()) => {
                self.buf.push('#');
                push_hex(&mut self.buf, &hasher.0.finalize()[..16]);
            }
            Err(error) => {
                tracing::warn!(%error, "a key argument could not be serialized; the call runs uncached");
                self.failed = true;
            }
        }
        self
    }

    /// Whether an argument could not be written, so that the call has no key.
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// Finishes the key, hashing the key part if it is too long.
    pub(crate) fn finish(mut self) -> EntryKey {
        let tag_texts = self
            .tag_starts
            .first()
            .map(|&key_end| self.buf.split_off(key_end));
        if self.buf.len() - self.key_start > MAX_KEY_LEN {
            let digest = hex_sha256(&self.buf[self.key_start..]);
            self.buf.truncate(self.key_start);
            self.buf.push('#');
            self.buf.push_str(&digest);
        }
        let entry_len = self.buf.len();
        if let Some((start, end)) = self.tag {
            self.buf.extend_from_within(..self.prefix_len);
            self.buf.push_str(":gen:");
            self.buf.extend_from_within(start..end);
        }
        let generation_end = self.buf.len();
        self.buf.extend_from_within(..self.prefix_len);
        self.buf.push_str(":fgen:");
        self.buf.extend_from_within(self.segment.0..self.segment.1);
        let function_end = self.buf.len();
        let mut tag_ends = [0; MAX_TAGS];
        let mut tags = 0;
        if let Some(texts) = tag_texts {
            let offset = self.tag_starts[0];
            let starts = self.tag_starts.iter().map(|start| start - offset);
            let ends = starts.clone().skip(1).chain([texts.len()]);
            let mut written: Vec<&str> = Vec::with_capacity(MAX_TAGS);
            for text in starts.zip(ends).map(|(start, end)| &texts[start..end]) {
                // Two templates may write one tag: it is read once.
                if written.len() == MAX_TAGS || written.contains(&text) {
                    continue;
                }
                written.push(text);
                self.buf.extend_from_within(..self.prefix_len);
                push_tag_generation(&mut self.buf, text);
                tag_ends[tags] = u32::try_from(self.buf.len()).expect("a key under 4 GiB");
                tags += 1;
            }
        }
        EntryKey {
            keys: self.buf,
            entry_len,
            generation_end,
            function_end,
            tag_ends,
            tags: tags as u8,
            shape: self.shape,
        }
    }
}

/// Appends what follows the prefix in the key of the generation of the tag
/// whose escaped text is `escaped`: `:tgen:` and the text, hashed when long.
fn push_tag_generation(buf: &mut String, escaped: &str) {
    buf.push_str(":tgen:");
    if escaped.len() > MAX_KEY_LEN {
        buf.push('#');
        buf.push_str(&hex_sha256(escaped));
    } else {
        buf.push_str(escaped);
    }
}

/// The key of the generation of `tag`, as entries carrying it read it.
pub(crate) fn tag_generation_key(prefix: &str, tag: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + tag.len() + 16);
    key.push_str(prefix);
    let mut escaped = String::with_capacity(tag.len() + 8);
    escape_str(&mut escaped, tag);
    push_tag_generation(&mut key, &escaped);
    key
}

/// The generation key of `user`, as [`KeyWriter`] derives it for entries.
pub(crate) fn generation_key(prefix: &str, user: &dyn Display) -> String {
    let key = KeyWriter::new(prefix, "", None, "", Some(UserId::Display(user))).finish();
    let generation = key
        .generation()
        .expect("a user always has a generation key");
    generation.to_owned()
}

/// The key of the generation of the function `id`, as entries carry it.
pub(crate) fn function_generation_key(prefix: &str, id: &str) -> String {
    let mut segment = String::with_capacity(id.len() + 8);
    escape_str(&mut segment, id);
    let key = KeyWriter::new(prefix, &segment, None, "", None).finish();
    key.function_generation().to_owned()
}

/// The copy of the function generation key `key` that lives in cluster
/// slot `slot`: on a cluster, every slot holds one, so that a lookup reads
/// it in the same `MGET` as the entry, whatever slot the entry is in.
pub(crate) fn in_slot(key: &str, slot: u16) -> String {
    /// For each slot, a hash tag that hashes to it: `{s<n>}`, the first such `n`.
    static TAGS: LazyLock<Vec<u32>> = LazyLock::new(|| {
        let mut tags = vec![u32::MAX; SLOTS];
        let mut missing = SLOTS;
        let mut n = 0;
        while missing > 0 {
            let slot = usize::from(cluster_slot(&format!("{{s{n}}}")));
            if tags[slot] == u32::MAX {
                tags[slot] = n;
                missing -= 1;
            }
            n += 1;
        }
        tags
    });
    format!("{key}:{{s{}}}", TAGS[usize::from(slot)])
}

/// The key of the lease on the entry `entry`: in the entry's cluster slot
/// (its hash tag if it has one, else a tag of that slot), and no entry's,
/// since no key part holds a raw `{`.
pub(crate) fn lease_key(entry: &str) -> String {
    in_slot(&format!("{entry}:lease"), cluster_slot(entry))
}

/// How many slots a Redis Cluster has.
pub(crate) const SLOTS: usize = 16_384;

/// Whether `key` is a group's generation, a function's or a tag's (not
/// one of its per-slot copies): ids and tags are escaped, so a generation
/// key ends in `:fgen:<id>` or `:tgen:<tag>` only if it is one (a user's
/// ends in its hash tag, as copies do). An entry whose key template ends in
/// `fgen:{arg}` passes too: the tracked table then keeps it among the hot
/// keys, which costs time, not truth.
pub(crate) fn is_group_generation(key: &str) -> bool {
    is_generation_of(key, b":fgen") || is_generation_of(key, b":tgen")
}

/// Whether `key` is a function's generation (see [`is_group_generation`]).
/// Asked on every tracked lookup, hence a search from the end for one byte
/// rather than for a substring.
pub(crate) fn is_function_generation(key: &str) -> bool {
    is_generation_of(key, b":fgen")
}

/// Whether `key` is a tag's generation (see [`is_group_generation`]).
pub(crate) fn is_tag_generation(key: &str) -> bool {
    is_generation_of(key, b":tgen")
}

fn is_generation_of(key: &str, kind: &[u8]) -> bool {
    let key = key.as_bytes();
    key.last() != Some(&b'}')
        && key
            .iter()
            .rposition(|&byte| byte == b':')
            .is_some_and(|colon| key[..colon].ends_with(kind))
}

/// Escapes `text` into the form used for function ids.
pub(crate) fn escape_str(out: &mut String, text: &str) {
    let _ = Escaper::new(out, "").write_str(text);
}

fn escape_display(out: &mut String, value: &dyn Display, reserved: &str) {
    // Writing into a String cannot fail; a Display impl that reports an error
    // still leaves what it wrote, which stays injective for that input.
    let _ = write!(Escaper::new(out, reserved), "{value}");
}

struct Escaper<'a> {
    out: &'a mut String,
    reserved: &'a str,
    /// Made once per value: `fmt` may hand a value over in several pieces.
    screen: Screen,
}

impl<'a> Escaper<'a> {
    fn new(out: &'a mut String, reserved: &'a str) -> Escaper<'a> {
        Escaper {
            out,
            reserved,
            screen: Screen::of(reserved),
        }
    }
}

impl Write for Escaper<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // A byte-wise screen first, since nearly every value needs no
        // escaping: a reserved character's bytes are in the text if the
        // character is, so a text that passes has none.
        if !text.bytes().any(|byte| self.screen.holds(byte)) {
            self.out.push_str(text);
            return Ok(());
        }
        let special = |c: char| ALWAYS_ESCAPED.contains(c) || self.reserved.contains(c);
        for c in text.chars() {
            if special(c) {
                for byte in c.encode_utf8(&mut [0; 4]).bytes() {
                    write!(self.out, "%{byte:02X}")?;
                }
            } else {
                self.out.push(c);
            }
        }
        Ok(())
    }
}

/// The bytes of the characters a value escapes, as a set: one lookup per
/// byte of a value, where a search of both strings per byte was most of
/// writing a short one.
struct Screen([u64; 4]);

impl Screen {
    fn of(reserved: &str) -> Screen {
        let mut set = [0; 4];
        for byte in ALWAYS_ESCAPED.bytes().chain(reserved.bytes()) {
            set[usize::from(byte >> 6)] |= 1 << (byte & 63);
        }
        Screen(set)
    }

    fn holds(&self, byte: u8) -> bool {
        self.0[usize::from(byte >> 6)] & (1 << (byte & 63)) != 0
    }
}

fn hex_sha256(text: &str) -> String {
    let mut hex = String::with_capacity(64);
    push_hex(&mut hex, &Sha256::digest(text.as_bytes()));
    hex
}

pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
}

/// Feeds what a serializer writes straight into the hash, without a buffer.
struct HashWriter(Sha256);

/// Writes `value` as compact JSON with every object's keys in order: what
/// `serde_json` writes for it when its maps are sorted, whatever order they
/// hold (`serde_json`'s `preserve_order` feature, which any crate of a
/// build may turn on, keeps insertion order).
fn write_canonical(out: &mut HashWriter, value: &serde_json::Value) -> serde_json::Result<()> {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.0.update(b"{");
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.0.update(b",");
                }
                serde_json::to_writer(&mut *out, key)?;
                out.0.update(b":");
                write_canonical(out, value)?;
            }
            out.0.update(b"}");
        }
        serde_json::Value::Array(items) => {
            out.0.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.0.update(b",");
                }
                write_canonical(out, item)?;
            }
            out.0.update(b"]");
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Redis Cluster's slot of `key`: CRC16/XMODEM of its hash tag (the
/// text between the first `{` and the next `}`, if not empty) or of
/// the whole key, modulo 16384.
pub(crate) fn cluster_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = key.find('{').and_then(|open| {
        let close = key[open + 1..].find('}')? + open + 1;
        (close > open + 1).then(|| &bytes[open + 1..close])
    });
    let crc = tagged.unwrap_or(bytes).iter().fold(0u16, |crc, &byte| {
        (crc << 8) ^ CRC16[usize::from((crc >> 8) as u8 ^ byte)]
    });
    crc % 16384
}

/// CRC16/XMODEM of each byte: a table lookup per byte of a key instead of
/// eight shifts (the slot of every cluster lookup is computed, twice).
const CRC16: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: Option<&str>, parts: &[&str]) -> EntryKey {
        method_key(None, user, parts)
    }

    fn method_key(owner: Option<&str>, user: Option<&str>, parts: &[&str]) -> EntryKey {
        let user = user.as_ref().map(|u| UserId::Display(u));
        let mut writer = KeyWriter::new("p", "app%3A%3Af:v1:", owner, ":", user);
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                writer.literal(":");
            }
            writer.value(part);
        }
        writer.finish()
    }

    #[test]
    fn every_slot_has_a_copy_of_a_function_generation() {
        for slot in [0, 1, 777, 12_182, 16_383] {
            let copy = in_slot("p:fgen:app%3A%3Af", slot);
            assert_eq!(cluster_slot(&copy), slot, "{copy}");
        }
    }

    #[test]
    fn a_lease_shares_its_entrys_slot() {
        for entry in [key(Some("42"), &["profile:7"]), key(None, &["plans"])] {
            let lease = lease_key(entry.entry());
            assert!(lease.starts_with(&format!("{}:lease:{{s", entry.entry())));
            assert_eq!(cluster_slot(&lease), cluster_slot(entry.entry()));
        }
    }

    #[test]
    fn an_integer_user_has_the_key_its_display_form_gives() {
        let keys = |integer: Integer, display: &dyn Display| {
            let at = |user| KeyWriter::new("p", "f:v1:", None, ":", Some(user)).finish();
            (at(UserId::Integer(integer)), at(UserId::Display(display)))
        };
        for id in [0, 7, 42, 1_000_000, u64::MAX] {
            let (integer, display) = keys(Integer::Unsigned(id), &id);
            assert_eq!(integer, display);
        }
        for id in [0, -1, 42, i64::MIN, i64::MAX] {
            let (integer, display) = keys(Integer::Signed(id), &id);
            assert_eq!(integer, display);
        }
        assert_eq!(
            generation_key("p", &-42),
            keys(Integer::Signed(-42), &0).0.generation().unwrap()
        );
    }

    #[test]
    fn an_integer_argument_is_written_and_escaped_as_its_display_form() {
        // A template's literal characters are escaped in values: here digits
        // and the minus sign, as in `"v2-{id}"`.
        let key = |write: &dyn Fn(&mut KeyWriter)| {
            let mut writer = KeyWriter::new("p", "f:v1:", None, "v2-", None);
            write(&mut writer);
            writer.finish()
        };
        for id in [0, 2, 42, 1_234_567_890, i64::MIN, -2, i64::MAX] {
            let integer = key(&|writer| {
                writer.integer(Integer::Signed(id));
            });
            assert_eq!(
                integer,
                key(&|writer| {
                    writer.value(&id);
                })
            );
        }
        let max = key(&|writer| {
            writer.integer(Integer::Unsigned(u64::MAX));
        });
        assert_eq!(
            max,
            key(&|writer| {
                writer.value(&u64::MAX);
            })
        );
        assert!(
            key(&|writer| {
                writer.integer(Integer::Signed(-2));
            })
            .entry()
            .ends_with(":%2D%32")
        );
    }

    #[test]
    fn the_stored_shape_parts_entries_but_not_their_generations() {
        let shaped =
            |segment| KeyWriter::new("p", segment, None, "", Some(UserId::Display(&"u"))).finish();
        let a = shaped("f:v1:s0123456789abcdef:");
        assert_eq!(a.entry(), "p:f:v1:s0123456789abcdef:{u:u}:");
        let b = shaped("f:v1:s00000000000000fe:");
        assert_eq!(b.entry(), "p:f:v1:s00000000000000fe:{u:u}:");
        assert_eq!(a.generation(), b.generation());
        assert_eq!(a.function_generation(), b.function_generation());
        assert_eq!(a.function_generation(), "p:fgen:f");
        assert_eq!(a.shape(), "v1:s0123456789abcdef");
        assert_eq!(a.entry_of_shape(b.shape()), b.entry());
        assert_eq!(a.shapes(), "p:shapes:f");
    }

    #[test]
    fn layout_is_readable() {
        let k = key(Some("42"), &["profile", "7"]);
        assert_eq!(k.entry(), "p:app%3A%3Af:v1:{u:42}:profile:7");
        assert_eq!(k.generation(), Some("p:gen:{u:42}"));
        let g = key(None, &["x"]);
        assert_eq!(g.entry(), "p:app%3A%3Af:v1:g:x");
        assert_eq!(g.generation(), None);
        assert_eq!(g.function_generation(), "p:fgen:app%3A%3Af");
        assert_eq!(k.function_generation(), g.function_generation());
        assert_eq!(
            function_generation_key("p", "app::f"),
            g.function_generation()
        );
    }

    #[test]
    fn serialized_arguments_enter_the_key_as_a_stable_digest() {
        #[derive(serde::Serialize)]
        struct Page {
            page: u32,
            per_page: u32,
        }
        let digest = |page: &Page| {
            let mut writer = KeyWriter::new("p", "f:v0:", None, ":", None);
            writer.literal("notes:").digest(page);
            assert!(!writer.failed());
            writer.finish().entry().to_owned()
        };
        let first = Page {
            page: 1,
            per_page: 20,
        };
        // The first 128 bits of SHA-256 over `{"page":1,"per_page":20}`: the
        // same in every process and build, so fleets share the entry.
        assert_eq!(
            digest(&first),
            "p:f:v0:g:notes:#ade6445d3381ae196a6fd6f8ff455eee"
        );
        let second = Page {
            page: 2,
            per_page: 20,
        };
        assert_ne!(digest(&first), digest(&second));
    }

    #[test]
    fn equal_maps_give_one_digest_whatever_their_order() {
        use std::collections::{BTreeMap, HashMap};

        #[derive(serde::Serialize)]
        struct Filter {
            tags: HashMap<String, Vec<u32>>,
            limit: u32,
        }
        let digest = |filter: &Filter| {
            let mut writer = KeyWriter::new("p", "f:v0:", None, "", None);
            writer.digest(filter);
            assert!(!writer.failed());
            writer.finish().entry().to_owned()
        };
        let pairs: Vec<(String, Vec<u32>)> = (0..32)
            .map(|i| (format!("tag{i}"), vec![i, i * 2]))
            .collect();
        let built = |order: &mut dyn Iterator<Item = &(String, Vec<u32>)>, capacity| {
            let mut tags = HashMap::with_capacity(capacity);
            tags.extend(order.cloned());
            Filter { tags, limit: 10 }
        };
        let first = digest(&built(&mut pairs.iter(), 0));
        for capacity in [0, 64, 1_000] {
            assert_eq!(digest(&built(&mut pairs.iter().rev(), capacity)), first);
            assert_eq!(digest(&built(&mut pairs.iter(), capacity)), first);
        }
        // A sorted map of the same entries is the same JSON, so the same key.
        let sorted: BTreeMap<_, _> = pairs.iter().cloned().collect();
        let mut writer = KeyWriter::new("p", "f:v0:", None, "", None);
        #[derive(serde::Serialize)]
        struct SortedFilter {
            limit: u32,
            tags: BTreeMap<String, Vec<u32>>,
        }
        writer.digest(&SortedFilter {
            limit: 10,
            tags: sorted,
        });
        assert_eq!(writer.finish().entry(), first);
    }

    #[test]
    fn an_argument_that_cannot_be_serialized_leaves_the_call_without_a_key() {
        let mut map = std::collections::BTreeMap::new();
        map.insert((1, 2), "a tuple key has no JSON form");
        let mut writer = KeyWriter::new("p", "f:v0:", None, "", None);
        writer.digest(&map);
        assert!(writer.failed());
    }

    #[test]
    fn separators_in_values_do_not_collide() {
        assert_ne!(key(Some("a:b"), &["c"]), key(Some("a"), &["b:c"]));
        assert_ne!(key(Some("a}"), &["c"]), key(Some("a"), &["}c"]));
        assert_ne!(key(None, &["a:b", "c"]), key(None, &["a", "b:c"]));
        assert_ne!(key(Some(""), &[""]), key(None, &[""]));
        assert_ne!(key(Some("%3A"), &[]), key(Some(":"), &[]));
    }

    #[test]
    fn methods_of_different_types_do_not_collide() {
        let a = method_key(Some("app::A"), Some("u"), &["k"]);
        assert_eq!(a.entry(), "p:app%3A%3Af:v1:@app%3A%3AA:{u:u}:k");
        assert_ne!(a, method_key(Some("app::B"), Some("u"), &["k"]));
        assert_ne!(method_key(Some("g"), None, &["k"]), key(None, &["g:k"]));
    }

    #[test]
    fn long_parts_are_hashed_not_truncated() {
        let long = "x".repeat(10_000);
        let longer = format!("{long}y");
        let a = key(Some(&long), &[&long]);
        let b = key(Some(&longer), &[&long]);
        let c = key(Some(&long), &[&longer]);
        assert!(a.entry().len() < 400, "{}", a.entry());
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.generation(), c.generation());
    }

    #[test]
    fn cluster_slot_matches_redis() {
        // The CRC16/XMODEM check value, and hash tags as the Redis Cluster
        // specification describes them.
        assert_eq!(cluster_slot("123456789"), 0x31C3);
        let user = cluster_slot("user1000");
        assert_eq!(cluster_slot("{user1000}.following"), user);
        assert_eq!(cluster_slot("{user1000}.followers"), user);
    }

    /// Strings built to break a naive encoding: separators, braces, the
    /// escape character, NUL, non-ASCII, empty, and long.
    fn adversarial(count: usize) -> Vec<String> {
        const PIECES: [&str; 12] = [
            "a", ":", "{", "}", "%", "%3A", "#", "\0", "\\", "é", "日本", " ",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..count)
            .map(|i| {
                if i % 500 == 0 {
                    return "k".repeat(300 + i / 500);
                }
                let len = (next() % 7) as usize;
                (0..len)
                    .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                    .collect()
            })
            .collect()
    }

    #[test]
    fn ten_thousand_adversarial_inputs_never_share_an_entry() {
        use std::collections::{HashMap, HashSet};

        let strings = adversarial(10_000);
        let mut seen: HashMap<String, (Option<String>, String)> = HashMap::new();
        let mut inputs = HashSet::new();
        for (i, key_part) in strings.iter().enumerate() {
            let user = strings[(i * 7919) % strings.len()].clone();
            for user in [Some(user), None] {
                if !inputs.insert((user.clone(), key_part.clone())) {
                    continue;
                }
                let entry = key(user.as_deref(), &[key_part]);
                if let Some(previous) =
                    seen.insert(entry.entry().to_owned(), (user.clone(), key_part.clone()))
                {
                    panic!(
                        "{previous:?} and {:?} share {}",
                        (user, key_part),
                        entry.entry()
                    );
                }
                if let Some(generation) = entry.generation() {
                    assert_eq!(
                        cluster_slot(entry.entry()),
                        cluster_slot(generation),
                        "{} and its generation {generation} must share a slot",
                        entry.entry()
                    );
                }
            }
        }
        assert!(seen.len() > 10_000, "{} distinct inputs", seen.len());
    }

    #[test]
    fn only_a_function_generation_is_one() {
        let k = key(Some("fgen"), &["x"]);
        assert!(is_group_generation(k.function_generation()));
        assert!(!is_group_generation(k.entry()));
        assert!(!is_group_generation(k.generation().unwrap()));
        let named_fgen = KeyWriter::new("p", "fgen:v1:", None, "", None).finish();
        assert!(!is_group_generation(named_fgen.entry()));
        assert!(is_group_generation(named_fgen.function_generation()));
        let key = function_generation_key("a:b", "svc::f");
        assert!(is_group_generation(&key), "{key}");
        assert!(!is_group_generation(&in_slot(&key, 7)));
        assert!(!is_group_generation(&lease_key(k.entry())));
    }

    #[test]
    fn generation_key_matches_entries() {
        let k = key(Some("a:{b}"), &["k"]);
        assert_eq!(k.generation().unwrap(), generation_key("p", &"a:{b}"));
    }

    fn tagged(prefix: &str, tags: &[&[&dyn Display]]) -> EntryKey {
        let mut writer = KeyWriter::new(prefix, "f:v1:", None, ":", None);
        writer.literal("k");
        for parts in tags {
            writer.tag();
            for part in *parts {
                writer.tag_value(*part);
            }
        }
        writer.finish()
    }

    #[test]
    fn a_tag_is_its_text_whichever_template_writes_it() {
        let key = tagged("a:b", &[&[&"org:", &42], &[&"plans"]]);
        let tags: Vec<&str> = key.tag_generations().collect();
        assert_eq!(
            tags,
            [
                tag_generation_key("a:b", "org:42"),
                tag_generation_key("a:b", "plans")
            ]
        );
        assert_eq!(tags[0], "a:b:tgen:org%3A42");
        assert_eq!(
            key.entry(),
            "a:b:f:v1:g:k",
            "tags stay out of the entry's key"
        );
        assert_eq!(key.function_generation(), "a:b:fgen:f");
        assert!(
            tags.iter()
                .all(|tag| is_tag_generation(tag) && is_group_generation(tag))
        );
        assert!(!is_tag_generation(key.function_generation()));
        assert!(!is_tag_generation(&in_slot(tags[0], 3)));
        assert!(!tagged("p", &[]).has_tags());
    }

    #[test]
    fn tags_are_escaped_whole_read_once_and_hashed_when_long() {
        let colliding = tagged("p", &[&[&"a:", &"b"], &[&"a", &":b"], &[&"a%3Ab"]]);
        let tags: Vec<&str> = colliding.tag_generations().collect();
        assert_eq!(
            tags,
            ["p:tgen:a%3Ab", "p:tgen:a%253Ab"],
            "one text, one tag"
        );
        let long = "x".repeat(MAX_KEY_LEN + 1);
        let key = tagged("p", &[&[&long.as_str()]]);
        let tag = key.tag_generations().next().unwrap();
        assert_eq!(tag, tag_generation_key("p", &long));
        assert!(tag.len() < long.len(), "{tag}");
        let many = tagged("p", &[&[&1], &[&2], &[&3], &[&4], &[&5]]);
        assert_eq!(many.tag_generations().len(), MAX_TAGS);
    }
}
