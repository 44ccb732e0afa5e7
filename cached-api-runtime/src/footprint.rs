//! What a decoded value costs in memory, estimated from its serialization:
//! the in-process budgets (the embedded store's, `l1`'s) charge values by
//! it, so that what they keep is what the process holds.
//!
//! A value's own size is known from its type; what it owns on the heap is
//! not, so it is walked with serde: each string or byte buffer is one
//! allocation of its length, each sequence one of its elements' sizes, each
//! map one of its keys' and values' (with a hash table's spare room), and
//! each allocation is rounded as the system allocator rounds it. Types
//! that serialize what they do not own (an `Arc` shared with others, a
//! computed field) are estimated as if they owned it.

use std::mem::{size_of, size_of_val};

use serde::ser::{self, Serialize};

/// The bytes the allocator takes for a block of `len` bytes: glibc's
/// malloc adds 8 bytes of header, rounds to 16 and gives at least 32.
pub(crate) const fn allocation(len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let chunk = (len + 8).next_multiple_of(16);
    if chunk < 32 { 32 } else { chunk }
}

/// What an entry of a moka cache keyed by `key` costs besides its value:
/// moka's own records (its entry and policy data, deque nodes, table slot),
/// the key's `Arc<String>`, and what churn leaves unused in the allocator.
/// The constant is measured with `benches/memory_budget.rs`: resident
/// growth per kept entry, less the other terms, for values of 100 bytes to
/// 8 kB (within 3 % of the budget for each).
pub(crate) fn moka_entry(key: &str) -> usize {
    const RECORDS: usize = 512;
    RECORDS + allocation(16 + size_of::<String>()) + allocation(key.len())
}

/// What `value` costs when kept alone behind an `Arc`: the `Arc`'s block
/// (two counts and the value) and everything the value owns, as `shown`
/// serializes it (the value itself, or the form a response wrapper stores).
pub(crate) fn in_arc<T: ?Sized, S: Serialize + ?Sized>(value: &T, shown: &S) -> usize {
    allocation(16 + size_of_val(value)) + owned(shown)
}

/// The heap bytes `value` owns, as far as its serialization shows them.
pub(crate) fn owned<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut walk = Walk(0);
    // The walk itself cannot fail; a type's own `Serialize` may, and then
    // what was walked so far is the estimate.
    let _ = value.serialize(&mut walk);
    walk.0
}

/// The heap bytes seen so far. Each value walked answers its own size
/// inline, as its parent holds it (serde hands a sequence's elements by
/// reference, so their types do not tell): a string, a vector 24 bytes, a
/// map 48, a struct the sum of its fields.
struct Walk(usize);

/// A hash table keeps about an eighth of its slots free, plus a control
/// byte per slot.
fn table(entries: usize) -> usize {
    entries * 8 / 7
}

/// What an owned string or buffer takes inline: pointer, length, capacity.
const BUFFER: usize = 24;
/// What a hash map takes inline.
const MAP: usize = 48;
/// The tag of an enum, or of an `Option` without a niche, roughly.
const TAG: usize = 8;

#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a type's own serialization failed")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<M: std::fmt::Display>(_: M) -> Never {
        Never
    }
}

/// A sequence or map being walked: its elements' inline sizes, one
/// allocation at its end.
struct Block<'w> {
    walk: &'w mut Walk,
    elements: usize,
    count: usize,
    hashed: bool,
}

impl<'w> Block<'w> {
    fn of(walk: &'w mut Walk, hashed: bool) -> Result<Block<'w>, Never> {
        Ok(Block {
            walk,
            elements: 0,
            count: 0,
            hashed,
        })
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        self.elements += value.serialize(&mut *self.walk)?;
        Ok(())
    }

    fn end(self) -> Result<usize, Never> {
        let (block, inline) = if self.hashed {
            (table(self.elements) + table(self.count), MAP)
        } else {
            (self.elements, BUFFER)
        };
        self.walk.0 += allocation(block);
        Ok(inline)
    }
}

/// Fields and tuple elements are inside their parent: their inline sizes
/// add up to the parent's.
struct Inline<'w> {
    walk: &'w mut Walk,
    size: usize,
}

impl<'w> Inline<'w> {
    /// Starts at `size`: a variant's tag, or nothing.
    fn of(walk: &'w mut Walk, size: usize) -> Result<Inline<'w>, Never> {
        Ok(Inline { walk, size })
    }

    fn field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        self.size += value.serialize(&mut *self.walk)?;
        Ok(())
    }
}

macro_rules! sized {
    ($($method:ident($($ty:ty),*) => $size:expr),* $(,)?) => {$(
        fn $method(self, $(_: $ty),*) -> Result<usize, Never> {
            Ok($size)
        }
    )*};
}

impl<'w> ser::Serializer for &'w mut Walk {
    type Ok = usize;
    type Error = Never;
    type SerializeSeq = Block<'w>;
    type SerializeTuple = Inline<'w>;
    type SerializeTupleStruct = Inline<'w>;
    type SerializeTupleVariant = Inline<'w>;
    type SerializeMap = Block<'w>;
    type SerializeStruct = Inline<'w>;
    type SerializeStructVariant = Inline<'w>;

    sized!(
        serialize_bool(bool) => 1,
        serialize_i8(i8) => 1,
        serialize_i16(i16) => 2,
        serialize_i32(i32) => 4,
        serialize_i64(i64) => 8,
        serialize_i128(i128) => 16,
        serialize_u8(u8) => 1,
        serialize_u16(u16) => 2,
        serialize_u32(u32) => 4,
        serialize_u64(u64) => 8,
        serialize_u128(u128) => 16,
        serialize_f32(f32) => 4,
        serialize_f64(f64) => 8,
        serialize_char(char) => 4,
        serialize_none() => TAG,
        serialize_unit() => 0,
        serialize_unit_struct(&'static str) => 0,
        serialize_unit_variant(&'static str, u32, &'static str) => TAG,
    );

    fn serialize_str(self, v: &str) -> Result<usize, Never> {
        self.0 += allocation(v.len());
        Ok(BUFFER)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<usize, Never> {
        self.0 += allocation(v.len());
        Ok(BUFFER)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<usize, Never> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<usize, Never> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<usize, Never> {
        Ok(TAG + value.serialize(self)?)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Block<'w>, Never> {
        Block::of(self, false)
    }

    fn serialize_tuple(self, _: usize) -> Result<Inline<'w>, Never> {
        Inline::of(self, 0)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Inline<'w>, Never> {
        Inline::of(self, 0)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Inline<'w>, Never> {
        Inline::of(self, TAG)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Block<'w>, Never> {
        Block::of(self, true)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Inline<'w>, Never> {
        Inline::of(self, 0)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Inline<'w>, Never> {
        Inline::of(self, TAG)
    }
}

impl ser::SerializeSeq for Block<'_> {
    type Ok = usize;
    type Error = Never;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        self.element(value)
    }

    fn end(self) -> Result<usize, Never> {
        Block::end(self)
    }
}

impl ser::SerializeMap for Block<'_> {
    type Ok = usize;
    type Error = Never;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Never> {
        // A key and its value are one entry of the table.
        self.count += 1;
        self.element(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        self.element(value)
    }

    fn end(self) -> Result<usize, Never> {
        Block::end(self)
    }
}

macro_rules! inline_fields {
    ($($trait:ident :: $method:ident($($ty:ty),*)),* $(,)?) => {$(
        impl ser::$trait for Inline<'_> {
            type Ok = usize;
            type Error = Never;

            fn $method<T: Serialize + ?Sized>(&mut self, $(_: $ty,)* value: &T) -> Result<(), Never> {
                self.field(value)
            }

            fn end(self) -> Result<usize, Never> {
                Ok(self.size)
            }
        }
    )*};
}

inline_fields!(
    SerializeTuple::serialize_element(),
    SerializeTupleStruct::serialize_field(),
    SerializeTupleVariant::serialize_field(),
    SerializeStruct::serialize_field(&'static str),
    SerializeStructVariant::serialize_field(&'static str),
);

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn allocations_are_rounded_as_malloc_rounds_them() {
        assert_eq!(allocation(0), 0);
        assert_eq!(allocation(1), 32);
        assert_eq!(allocation(24), 32);
        assert_eq!(allocation(25), 48);
        assert_eq!(allocation(1000), 1008);
    }

    #[test]
    fn what_a_value_owns_is_its_strings_sequences_and_maps() {
        assert_eq!(owned(&7_u64), 0);
        assert_eq!(owned(&"x".repeat(1000)), 1008);
        // The vector's block holds three `String`s; each owns its text.
        let names = vec!["ann".to_owned(), "bob".to_owned(), "cy".to_owned()];
        assert_eq!(owned(&names), allocation(3 * 24) + 3 * 32);
        let numbers: Vec<u64> = (0..100).collect();
        assert_eq!(owned(&numbers), allocation(800));
        let map: HashMap<u64, u64> = (0..70).map(|i| (i, i)).collect();
        assert_eq!(owned(&map), allocation(70 * 16 * 8 / 7 + 70 * 8 / 7));
        let nested: Vec<Vec<u8>> = vec![vec![1; 10]; 2];
        assert_eq!(owned(&nested), allocation(2 * 24) + 2 * allocation(10));
        #[derive(serde::Serialize)]
        struct Profile {
            id: u64,
            name: String,
            tags: Option<Vec<String>>,
        }
        let profile = Profile {
            id: 1,
            name: "x".repeat(100),
            tags: Some(vec!["a".to_owned()]),
        };
        assert_eq!(owned(&profile), allocation(100) + allocation(24) + 32);
        assert_eq!(
            in_arc(&profile, &profile),
            allocation(16 + std::mem::size_of::<Profile>()) + owned(&profile)
        );
    }
}
