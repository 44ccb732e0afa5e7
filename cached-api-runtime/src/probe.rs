//! Choices the generated code makes by type, where the attribute sees only
//! tokens: which codec a stored type takes, whether its decoded values can
//! be kept, how an argument enters a key, and how the user does.
//!
//! Each choice is autoref dispatch: `(&Probe::<T>::new()).codec_kind()`
//! finds the method of the first trait that applies, trying the one
//! implemented for `Probe<T>` before the one for `&Probe<T>`. The key's
//! choice has three ways: `(&&&probe).key_kind()` tries the trait
//! implemented for `&&Probe<T>`, then `&Probe<T>`, then `Probe<T>`. The
//! chosen tag's method then states the bound it needs, so an unfit type is
//! one error naming it, not "no method found".

use std::fmt::Display;
use std::marker::PhantomData;

use serde::Serialize;

use crate::codec::{L1Value, TypedCodec};
use crate::key::{Integer, KeyWriter, UserId};
use crate::policy::CacheValue;
use crate::response::ResponseShape;

/// Stands for the type `T` in a choice.
pub struct Probe<T: ?Sized>(PhantomData<fn() -> *const T>);

impl<T: ?Sized> Probe<T> {
    pub const fn new() -> Probe<T> {
        Probe(PhantomData)
    }
}

impl<T: ?Sized> Default for Probe<T> {
    fn default() -> Self {
        Probe::new()
    }
}

/// A [`CachedResponse`](crate::response::CachedResponse) is stored as its parts and payload (and an `Option`
/// or `Result` of one, as the same of them).
pub struct ResponseCodec;
/// Anything else is stored with serde.
pub struct SerdeCodec;

pub trait ViaResponse {
    fn codec_kind(&self) -> ResponseCodec {
        ResponseCodec
    }
}

impl<T: ResponseShape> ViaResponse for Probe<T> {}

pub trait ViaSerde {
    fn codec_kind(&self) -> SerdeCodec {
        SerdeCodec
    }
}

impl<T> ViaSerde for &Probe<T> {}

impl ResponseCodec {
    pub fn codec<W: ResponseShape>(self) -> TypedCodec<W>
    where
        W::Payload: CacheValue,
        W::Failure: CacheValue,
    {
        TypedCodec::bincode_response()
    }
}

impl SerdeCodec {
    pub fn codec<T: CacheValue>(self) -> TypedCodec<T> {
        TypedCodec::bincode()
    }
}

/// A `Clone` value is kept decoded where the store allows, and copied out.
pub struct CloneCopies;
/// Any other value is decoded from its bytes on every hit.
pub struct NoCopies;

pub trait ViaClone {
    fn copies_kind(&self) -> CloneCopies {
        CloneCopies
    }
}

impl<T: L1Value> ViaClone for Probe<T> {}

pub trait ViaBytes {
    fn copies_kind(&self) -> NoCopies {
        NoCopies
    }
}

impl<T> ViaBytes for &Probe<T> {}

impl CloneCopies {
    pub fn with<T: L1Value>(self, codec: TypedCodec<T>) -> TypedCodec<T> {
        codec.with_copies()
    }
}

impl NoCopies {
    pub fn with<T>(self, codec: TypedCodec<T>) -> TypedCodec<T> {
        codec
    }
}

/// An integer key argument enters the key as its digits, without `fmt`.
pub struct IntegerKey;
/// Any other key argument enters the key by its `Display` form.
pub struct DisplayKey;
/// A key argument without `Display` enters it as a digest of its serialized form.
pub struct DigestKey;

pub trait ViaIntegerKey {
    fn key_kind(&self) -> IntegerKey {
        IntegerKey
    }
}

impl<T: KeyInteger> ViaIntegerKey for &&Probe<T> {}

pub trait ViaDisplay {
    fn key_kind(&self) -> DisplayKey {
        DisplayKey
    }
}

impl<T: Display + ?Sized> ViaDisplay for &Probe<T> {}

pub trait ViaDigest {
    fn key_kind(&self) -> DigestKey {
        DigestKey
    }
}

impl<T: ?Sized> ViaDigest for Probe<T> {}

/// A value that can be part of a key when it has no `Display` form.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key: it must implement `Display` or `serde::Serialize`",
    label = "used in the key",
    note = "a `Display` value is written as it is (escaped); a `Serialize` value, such as a query struct, as a digest of its JSON form",
    note = "without `key = …` the key is every argument but `State<…>`, `Data<…>` and the `user`: name what tells entries apart with `key = \"…\"`"
)]
pub trait KeyValue: Serialize {}

impl<T: Serialize + ?Sized> KeyValue for T {}

impl IntegerKey {
    pub fn write<T: KeyInteger>(self, key: &mut KeyWriter, value: &T) {
        key.integer(value.integer());
    }
}

impl DisplayKey {
    pub fn write<T: Display + ?Sized>(self, key: &mut KeyWriter, value: &T) {
        key.value(&value);
    }
}

impl DigestKey {
    pub fn write<T: KeyValue + ?Sized>(self, key: &mut KeyWriter, value: &T) {
        key.digest(value);
    }
}

/// An integer user id is written as its digits, without `fmt`.
pub struct IntegerUser;
/// Any other user id is written by its `Display` form.
pub struct DisplayUser;

pub trait ViaIntegerUser {
    fn user_kind(&self) -> IntegerUser {
        IntegerUser
    }
}

impl<T: KeyInteger> ViaIntegerUser for Probe<T> {}

pub trait ViaDisplayUser {
    fn user_kind(&self) -> DisplayUser {
        DisplayUser
    }
}

impl<T: ?Sized> ViaDisplayUser for &Probe<T> {}

/// The primitive integers of 64 bits or fewer, which [`IntegerKey`] and
/// [`IntegerUser`] write.
pub trait KeyInteger: Copy {
    fn integer(self) -> Integer;
}

macro_rules! key_integers {
    ($variant:ident: $wide:ty => $($int:ty),*) => {$(
        impl KeyInteger for $int {
            fn integer(self) -> Integer {
                Integer::$variant(<$wide>::try_from(self).expect("64 bits or fewer"))
            }
        }
    )*};
}

key_integers!(Unsigned: u64 => u8, u16, u32, u64, usize);
key_integers!(Signed: i64 => i8, i16, i32, i64, isize);

/// A value that can say whose an entry is.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the `user` of a cached function: it must implement `Display`",
    label = "the user of each call",
    note = "the user's `Display` form goes into the keys of the user's entries and of their generation, which `invalidate_user` replaces"
)]
pub trait UserDisplay: Display {}

impl<T: Display + ?Sized> UserDisplay for T {}

// Both take the user by a reference to a reference, which is `Display`
// even when the user's type is unsized.
impl IntegerUser {
    pub fn user<T: KeyInteger>(self, value: &&T) -> UserId<'static> {
        UserId::Integer(value.integer())
    }
}

impl DisplayUser {
    pub fn user<'a, T: UserDisplay + ?Sized>(self, value: &'a &'a T) -> UserId<'a> {
        UserId::Display(value)
    }
}

/// The [`Probe`] of the type behind a reference, so that generated code can
/// name it without writing the type: `probe_of(&value)`.
pub fn probe_of<T: ?Sized>(_: &T) -> Probe<T> {
    Probe::new()
}

#[cfg(test)]
// The borrows are the dispatch under test, written as the macro writes them.
#[allow(clippy::needless_borrow)]
mod tests {
    use super::*;

    #[test]
    fn an_integer_user_is_written_as_an_integer_and_anything_else_by_display() {
        let (unsigned, signed, name) = (42_u64, -7_i32, "ann");
        assert!(matches!(
            (&probe_of(&unsigned)).user_kind().user(&&unsigned),
            UserId::Integer(Integer::Unsigned(42))
        ));
        assert!(matches!(
            (&probe_of(&signed)).user_kind().user(&&signed),
            UserId::Integer(Integer::Signed(-7))
        ));
        assert!(matches!(
            (&probe_of(&name)).user_kind().user(&&name),
            UserId::Display(_)
        ));
    }

    #[test]
    fn a_key_argument_is_written_as_an_integer_by_display_or_as_a_digest() {
        #[derive(serde::Serialize)]
        struct Query {
            page: u32,
        }
        let _: IntegerKey = (&&&probe_of(&7_u32)).key_kind();
        let _: IntegerKey = (&&&probe_of(&-7_i64)).key_kind();
        let _: DisplayKey = (&&&probe_of(&"seven")).key_kind();
        let _: DisplayKey = (&&&probe_of(&7_u128)).key_kind();
        let _: DigestKey = (&&&probe_of(&Query { page: 7 })).key_kind();
    }
}
