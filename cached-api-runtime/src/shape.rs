//! The fingerprint of a stored type's shape: serde's data model of the type
//! (field names and order, field types, enum variants and theirs), traced
//! through its `Deserialize`, without the names of the types themselves.
//!
//! A deployed build and the next one share Redis while both run. What tells
//! their entries apart must change when the bytes would be read differently
//! (two fields swapped, a field added), and must not change when they would
//! not (the type renamed or moved to another module), or every release
//! starts with a cold cache.
//!
//! The tracer is a `Deserializer` that answers every request with a sample
//! value and writes down what was requested. One pass reaches one variant
//! of each enum, so passes are repeated until every variant of every enum
//! reached has been traced. Recursive types end where an `Option`, a
//! sequence or a map inside a container that is already being traced is
//! answered empty, and where an enum inside itself takes a variant that
//! does not recurse. A type that cannot be traced this way (it asks for
//! `deserialize_any`, as `serde_json::Value`, untagged and internally
//! tagged enums and `flatten` do, or refuses every sample value) is told
//! apart by its name instead: [`fingerprint`] says so once in the log.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex};

use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use sha2::{Digest, Sha256};

/// The fingerprint of `T`'s shape, the same in every build and process;
/// traced once per process by [`remembered`].
pub(crate) fn fingerprint<T: DeserializeOwned>() -> u64 {
    // A type's `Deserialize` is the user's code, and it runs here on sample
    // values no format would produce: if it panics, the call it was traced
    // for must not.
    let traced = std::panic::catch_unwind(trace::<T>).unwrap_or(Err(Failure::Panicked));
    match traced {
        Ok(shape) => digest(b"shape", shape.as_bytes()),
        Err(error) => {
            let name = std::any::type_name::<T>();
            tracing::warn!(
                stored_type = name,
                %error,
                "the shape of this stored type cannot be traced; its entries are told apart by the type's name instead, so renaming or moving the type makes them misses, and a change of its fields needs `version = …` bumped"
            );
            digest(b"name", name.as_bytes())
        }
    }
}

/// The value of `fingerprint`, computed the first time it is asked for.
/// Keyed by the function's address: each instantiation of [`fingerprint`]
/// is a function of its own, and two that share an address compute the same.
pub(crate) fn remembered(fingerprint: fn() -> u64) -> u64 {
    static KNOWN: LazyLock<Mutex<HashMap<usize, u64>>> = LazyLock::new(Mutex::default);
    let address = fingerprint as usize;
    if let Some(&known) = KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&address)
    {
        return known;
    }
    // Traced outside the lock: a type's `Deserialize` is the user's code.
    let computed = fingerprint();
    KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(address, computed);
    computed
}

fn digest(domain: &[u8], text: &[u8]) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(domain);
    hasher.update([0]);
    hasher.update(text);
    u64::from_le_bytes(hasher.finalize()[..8].try_into().expect("8 bytes"))
}

/// Passes before a type is given up on: each pass traces at least one new
/// variant, or moves a choice that recursed or a sample that was refused.
const MAX_PASSES: usize = 4_096;
/// Containers nested in one another before a pass is given up on as a
/// recursion that did not end.
const MAX_DEPTH: usize = 64;

/// Sample values a primitive is answered with, in the order tried: a
/// hand-written `Deserialize` that validates (a non-zero integer, a date,
/// a UUID, a URL) refuses the first and may take a later one.
const INTEGERS: [u8; 3] = [0, 1, 2];
const STRINGS: [&str; 6] = [
    "",
    "1",
    "1970-01-01T00:00:00Z",
    "00000000-0000-0000-0000-000000000000",
    "http://localhost/",
    "a",
];
const BYTE_LENGTHS: [usize; 5] = [0, 16, 32, 8, 4];

/// The text of `T`'s shape: a canonical walk of what the passes traced,
/// with each container written out the first time it is met and referred
/// to by its order of appearance afterwards.
fn trace<T: DeserializeOwned>() -> Result<String, Failure> {
    let mut trace = Trace::default();
    for _ in 0..MAX_PASSES {
        let mut root = Vec::new();
        trace.start_pass();
        match T::deserialize(Tracer::new(&mut trace, &mut root, false)) {
            Ok(_) => {
                if let Some(conflict) = trace.conflict.take() {
                    return Err(Failure::Conflict(conflict));
                }
                if trace.complete() {
                    return Ok(trace.canonical(&root));
                }
            }
            Err(Failure::TooDeep) => match trace.recursed.take() {
                Some(container) => trace.containers[container].cut_choice += 1,
                None => return Err(Failure::TooDeep),
            },
            Err(Failure::Refused(message)) => match trace.last_primitive.take() {
                Some((ordinal, count)) if trace.sample(ordinal) + 1 < count => {
                    *trace.samples.entry(ordinal).or_default() += 1;
                }
                _ => return Err(Failure::Refused(message)),
            },
            Err(failure) => return Err(failure),
        }
    }
    Err(Failure::TooManyPasses)
}

/// Why a type could not be traced.
#[derive(Debug)]
enum Failure {
    /// The type asked for something only a self-describing format answers.
    Unsupported(&'static str),
    /// The type's `Deserialize` refused every sample value offered.
    Refused(String),
    /// A recursion no variant choice ended.
    TooDeep,
    /// Two types of one serde name and members traced differently.
    Conflict(String),
    /// Enum variants still untraced after every pass.
    TooManyPasses,
    /// The type's `Deserialize` panicked on a sample value.
    Panicked,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unsupported(what) => write!(
                f,
                "it asks for `{what}`, which bincode cannot answer either"
            ),
            Failure::Refused(message) => {
                write!(f, "its `Deserialize` refused every sample value: {message}")
            }
            Failure::TooDeep => write!(f, "it nests deeper than {MAX_DEPTH} containers"),
            Failure::Conflict(name) => {
                write!(f, "two types named `{name}` with the same members differ")
            }
            Failure::TooManyPasses => {
                write!(f, "its enums were not all traced in {MAX_PASSES} passes")
            }
            Failure::Panicked => write!(f, "its `Deserialize` panicked on a sample value"),
        }
    }
}

impl std::error::Error for Failure {}

impl de::Error for Failure {
    fn custom<M: fmt::Display>(message: M) -> Failure {
        Failure::Refused(message.to_string())
    }
}

/// One piece of a shape's text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A primitive or the start or end of a compound type.
    Text(&'static str),
    /// A tuple's length.
    Len(usize),
    /// A field's name, in a struct variant.
    Name(&'static str),
    /// A struct, tuple struct, newtype or enum, by its index in `containers`.
    Container(usize),
}

/// What identifies a container while tracing: serde's name for it, its
/// kind, and its field or variant names (or its length). The name is used
/// only to find the container again, never written into the shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ContainerKey {
    kind: &'static str,
    name: &'static str,
    members: &'static [&'static str],
    len: usize,
}

#[derive(Debug)]
struct Container {
    key: ContainerKey,
    /// The traced shape of each variant (an enum) or of the whole (one).
    bodies: Vec<Option<Vec<Token>>>,
    /// Which variant an enum takes where it is reached inside itself.
    cut_choice: usize,
}

#[derive(Debug, Default)]
struct Trace {
    containers: Vec<Container>,
    index: HashMap<ContainerKey, usize>,
    /// Containers being traced, outermost first.
    open: Vec<usize>,
    /// The outermost enum on the path that was reached inside itself, so
    /// that a pass that recursed too deep moves its choice.
    recursed: Option<usize>,
    /// Which sample each primitive takes, by its order in the pass.
    samples: HashMap<usize, usize>,
    primitives: usize,
    /// The last primitive answered, and how many samples it has.
    last_primitive: Option<(usize, usize)>,
    conflict: Option<String>,
}

impl Trace {
    fn start_pass(&mut self) {
        self.open.clear();
        self.recursed = None;
        self.primitives = 0;
        self.last_primitive = None;
    }

    fn container(&mut self, key: ContainerKey, bodies: usize) -> usize {
        if let Some(&known) = self.index.get(&key) {
            return known;
        }
        let index = self.containers.len();
        self.containers.push(Container {
            key: key.clone(),
            bodies: vec![None; bodies],
            cut_choice: 0,
        });
        self.index.insert(key, index);
        index
    }

    /// The sample the primitive `ordinal` of this pass takes.
    fn sample(&self, ordinal: usize) -> usize {
        self.samples.get(&ordinal).copied().unwrap_or(0)
    }

    /// The next primitive's sample index, out of `count`.
    fn next_sample(&mut self, count: usize) -> usize {
        let ordinal = self.primitives;
        self.primitives += 1;
        self.last_primitive = Some((ordinal, count));
        self.sample(ordinal) % count
    }

    fn record(&mut self, container: usize, body: usize, tokens: Vec<Token>) {
        let slot = &mut self.containers[container].bodies[body];
        match slot {
            Some(known) if *known != tokens => {
                self.conflict = Some(self.containers[container].key.name.to_owned());
            }
            Some(_) => {}
            None => *slot = Some(tokens),
        }
    }

    fn complete(&self) -> bool {
        self.containers
            .iter()
            .all(|container| container.bodies.iter().all(Option::is_some))
    }

    /// Which variant the enum `container` takes where it is not reached
    /// inside itself: one not traced yet, else one that leads to a
    /// container with something untraced, else the first.
    fn choose_variant(&self, container: usize) -> usize {
        let bodies = &self.containers[container].bodies;
        if let Some(untraced) = bodies.iter().position(Option::is_none) {
            return untraced;
        }
        let mut seen = vec![false; self.containers.len()];
        seen[container] = true;
        bodies
            .iter()
            .position(|body| self.leads_to_untraced(body.as_deref().unwrap_or_default(), &mut seen))
            .unwrap_or(0)
    }

    fn leads_to_untraced(&self, tokens: &[Token], seen: &mut [bool]) -> bool {
        tokens.iter().any(|token| match *token {
            Token::Container(index) if !seen[index] => {
                seen[index] = true;
                self.containers[index].bodies.iter().any(|body| match body {
                    None => true,
                    Some(tokens) => self.leads_to_untraced(tokens, seen),
                })
            }
            _ => false,
        })
    }

    fn canonical(&self, root: &[Token]) -> String {
        let mut out = String::new();
        let mut order = vec![None; self.containers.len()];
        let mut next = 0;
        self.write_tokens(root, &mut out, &mut order, &mut next);
        out
    }

    fn write_tokens(
        &self,
        tokens: &[Token],
        out: &mut String,
        order: &mut [Option<usize>],
        next: &mut usize,
    ) {
        use fmt::Write as _;
        for token in tokens {
            match *token {
                Token::Text(text) => {
                    out.push_str(text);
                    out.push(' ');
                }
                Token::Len(len) => {
                    let _ = write!(out, "{len} ");
                }
                Token::Name(name) => {
                    // Its length first: a name may hold any character.
                    let _ = write!(out, "{}:{name} ", name.len());
                }
                Token::Container(index) => {
                    if let Some(seen) = order[index] {
                        let _ = write!(out, "^{seen} ");
                        continue;
                    }
                    order[index] = Some(*next);
                    *next += 1;
                    let container = &self.containers[index];
                    let _ = write!(out, "{}[", container.key.kind);
                    if container.key.kind == "enum" {
                        for (name, body) in container.key.members.iter().zip(&container.bodies) {
                            // Lengths first: a name may hold any character.
                            let _ = write!(out, "{}:{name}(", name.len());
                            let body = body.as_deref().unwrap_or_default();
                            self.write_tokens(body, out, order, next);
                            out.push_str(") ");
                        }
                        out.push_str("] ");
                    } else {
                        for name in container.key.members {
                            let _ = write!(out, "{}:{name} ", name.len());
                        }
                        if container.key.kind != "struct" {
                            let _ = write!(out, "{} ", container.key.len);
                        }
                        out.push_str("](");
                        let body = container.bodies[0].as_deref().unwrap_or_default();
                        self.write_tokens(body, out, order, next);
                        out.push_str(") ");
                    }
                }
            }
        }
    }
}

/// Answers one value's requests, writing what was asked into `out`.
struct Tracer<'t> {
    trace: &'t mut Trace,
    out: &'t mut Vec<Token>,
    /// Inside a container already being traced: compound values are
    /// answered empty, so that the recursion ends.
    cut: bool,
}

impl<'t> Tracer<'t> {
    fn new(trace: &'t mut Trace, out: &'t mut Vec<Token>, cut: bool) -> Tracer<'t> {
        Tracer { trace, out, cut }
    }

    fn text(&mut self, text: &'static str) {
        self.out.push(Token::Text(text));
    }

    fn integer(&mut self, kind: &'static str) -> u8 {
        self.text(kind);
        INTEGERS[self.trace.next_sample(INTEGERS.len())]
    }

    /// Traces a container: writes a reference to it here, and its body
    /// where it is kept, unless this is a container inside itself.
    fn container<R>(
        self,
        key: ContainerKey,
        bodies: usize,
        choose: impl FnOnce(&Trace, usize, bool) -> usize,
        visit: impl FnOnce(Tracer<'_>, usize) -> Result<R, Failure>,
    ) -> Result<R, Failure> {
        let is_enum = key.kind == "enum";
        let index = self.trace.container(key, bodies);
        self.out.push(Token::Container(index));
        if self.trace.open.len() >= MAX_DEPTH {
            return Err(Failure::TooDeep);
        }
        let inside_itself = self.trace.open.contains(&index);
        let body = choose(self.trace, index, inside_itself);
        // The outermost enum met inside itself on this path is the choice
        // to move if the pass recurses too deep.
        let blamed_here = is_enum && inside_itself && self.trace.recursed.is_none();
        if blamed_here {
            self.trace.recursed = Some(index);
        }
        self.trace.open.push(index);
        let mut tokens = Vec::new();
        let result = visit(Tracer::new(self.trace, &mut tokens, inside_itself), body);
        self.trace.open.pop();
        if result.is_ok() {
            if !inside_itself {
                self.trace.record(index, body, tokens);
            }
            if blamed_here {
                self.trace.recursed = None;
            }
        }
        result
    }
}

macro_rules! integers {
    ($($method:ident $visit:ident $ty:ty;)*) => {
        $(
            fn $method<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Failure> {
                let sample = self.integer(stringify!($ty));
                visitor.$visit(sample as $ty)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = Failure;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Failure> {
        Err(Failure::Unsupported("deserialize_any"))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Failure> {
        Err(Failure::Unsupported("deserialize_ignored_any"))
    }

    integers! {
        deserialize_i8 visit_i8 i8;
        deserialize_i16 visit_i16 i16;
        deserialize_i32 visit_i32 i32;
        deserialize_i64 visit_i64 i64;
        deserialize_i128 visit_i128 i128;
        deserialize_u8 visit_u8 u8;
        deserialize_u16 visit_u16 u16;
        deserialize_u32 visit_u32 u32;
        deserialize_u64 visit_u64 u64;
        deserialize_u128 visit_u128 u128;
    }

    fn deserialize_bool<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Failure> {
        let sample = self.integer("bool");
        visitor.visit_bool(sample == 1)
    }

    fn deserialize_f32<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Failure> {
        let sample = self.integer("f32");
        visitor.visit_f32(f32::from(sample))
    }

    fn deserialize_f64<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Failure> {
        let sample = self.integer("f64");
        visitor.visit_f64(f64::from(sample))
    }

    fn deserialize_char<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Failure> {
        let sample = self.integer("char");
        visitor.visit_char(char::from(b'a' + sample))
    }

    fn deserialize_str<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Failure> {
        self.text("str");
        visitor.visit_str(STRINGS[self.trace.next_sample(STRINGS.len())])
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Failure> {
        self.text("bytes");
        let len = BYTE_LENGTHS[self.trace.next_sample(BYTE_LENGTHS.len())];
        visitor.visit_byte_buf(vec![0; len])
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Failure> {
        self.text("option(");
        let value = if self.cut {
            visitor.visit_none()
        } else {
            visitor.visit_some(Tracer::new(self.trace, self.out, false))
        };
        self.out.push(Token::Text(")"));
        value
    }

    fn deserialize_unit<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Failure> {
        self.text("()");
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        mut self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Failure> {
        self.text("unit");
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Failure> {
        let key = ContainerKey {
            kind: "newtype",
            name,
            members: &[],
            len: 1,
        };
        self.container(
            key,
            1,
            |_, _, _| 0,
            |inner, _| visitor.visit_newtype_struct(inner),
        )
    }

    fn deserialize_seq<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Failure> {
        self.text("seq(");
        let len = usize::from(!self.cut);
        let value = visitor.visit_seq(Elements::new(self.trace, self.out, len));
        self.out.push(Token::Text(")"));
        value
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        mut self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Failure> {
        self.text("tuple(");
        self.out.push(Token::Len(len));
        let cut = self.cut;
        let value = visitor.visit_seq(Elements::new(self.trace, self.out, len).cut(cut));
        self.out.push(Token::Text(")"));
        value
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Failure> {
        let key = ContainerKey {
            kind: "tuple_struct",
            name,
            members: &[],
            len,
        };
        self.container(
            key,
            1,
            |_, _, _| 0,
            |inner, _| {
                let cut = inner.cut;
                visitor.visit_seq(Elements::new(inner.trace, inner.out, len).cut(cut))
            },
        )
    }

    fn deserialize_map<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Failure> {
        self.text("map(");
        let len = usize::from(!self.cut);
        let value = visitor.visit_map(Elements::new(self.trace, self.out, len));
        self.out.push(Token::Text(")"));
        value
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Failure> {
        let key = ContainerKey {
            kind: "struct",
            name,
            members: fields,
            len: fields.len(),
        };
        self.container(
            key,
            1,
            |_, _, _| 0,
            |inner, _| {
                let cut = inner.cut;
                visitor.visit_seq(Elements::new(inner.trace, inner.out, fields.len()).cut(cut))
            },
        )
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Failure> {
        if variants.is_empty() {
            return Err(Failure::Unsupported("an enum without variants"));
        }
        let key = ContainerKey {
            kind: "enum",
            name,
            members: variants,
            len: variants.len(),
        };
        let choose = |trace: &Trace, index: usize, inside_itself: bool| {
            if inside_itself {
                trace.containers[index].cut_choice % variants.len()
            } else {
                trace.choose_variant(index)
            }
        };
        self.container(key, variants.len(), choose, |inner, variant| {
            visitor.visit_enum(Variant {
                tracer: inner,
                name: variants[variant],
            })
        })
    }

    fn is_human_readable(&self) -> bool {
        // As bincode: types such as UUIDs then ask for their compact form.
        false
    }
}

/// The elements of a sequence, tuple or struct, or the entries of a map.
struct Elements<'t> {
    trace: &'t mut Trace,
    out: &'t mut Vec<Token>,
    remaining: usize,
    cut: bool,
}

impl<'t> Elements<'t> {
    fn new(trace: &'t mut Trace, out: &'t mut Vec<Token>, len: usize) -> Elements<'t> {
        Elements {
            trace,
            out,
            remaining: len,
            cut: false,
        }
    }

    /// Elements that are themselves inside a container being traced.
    fn cut(self, cut: bool) -> Elements<'t> {
        Elements { cut, ..self }
    }

    fn element<'de, S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Failure> {
        seed.deserialize(Tracer::new(self.trace, self.out, self.cut))
    }
}

impl<'de> de::SeqAccess<'de> for Elements<'_> {
    type Error = Failure;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Failure> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        self.element(seed).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.remaining)
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_> {
    type Error = Failure;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Failure> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        self.element(seed).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Failure> {
        self.element(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.remaining)
    }
}

/// The one variant an enum is traced as in this pass.
struct Variant<'t> {
    tracer: Tracer<'t>,
    name: &'static str,
}

impl<'de, 't> de::EnumAccess<'de> for Variant<'t> {
    type Error = Failure;
    type Variant = Tracer<'t>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Tracer<'t>), Failure> {
        let name = de::value::StrDeserializer::<Failure>::new(self.name);
        Ok((seed.deserialize(name)?, self.tracer))
    }
}

impl<'de> de::VariantAccess<'de> for Tracer<'_> {
    type Error = Failure;

    fn unit_variant(mut self) -> Result<(), Failure> {
        self.text("unit");
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Failure> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        mut self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Failure> {
        self.text("tuple");
        self.out.push(Token::Len(len));
        visitor.visit_seq(Elements::new(self.trace, self.out, len).cut(self.cut))
    }

    fn struct_variant<V: Visitor<'de>>(
        mut self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Failure> {
        self.text("struct");
        self.out
            .extend(fields.iter().map(|&field| Token::Name(field)));
        let len = fields.len();
        visitor.visit_seq(Elements::new(self.trace, self.out, len).cut(self.cut))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::{Deserialize, Deserializer};

    use super::*;

    fn shape<T: DeserializeOwned>() -> String {
        trace::<T>().expect("traced")
    }

    #[allow(dead_code)]
    mod v1 {
        #[derive(serde::Deserialize)]
        pub struct Account {
            pub email: String,
            pub display_name: String,
            pub balance_cents: u64,
        }
    }

    #[allow(dead_code)]
    mod v2 {
        /// `v1::Account` with its two strings swapped.
        #[derive(serde::Deserialize)]
        pub struct Account {
            pub display_name: String,
            pub email: String,
            pub balance_cents: u64,
        }

        /// `v1::Account` with a field added.
        #[derive(serde::Deserialize)]
        pub struct AccountPlus {
            pub email: String,
            pub display_name: String,
            pub balance_cents: u64,
            pub plan: Option<String>,
        }
    }

    #[allow(dead_code)]
    mod moved {
        /// `v1::Account` renamed, in another module.
        #[derive(serde::Deserialize)]
        pub struct Customer {
            pub email: String,
            pub display_name: String,
            pub balance_cents: u64,
        }
    }

    #[test]
    fn fields_swapped_or_added_change_the_shape_a_new_name_or_module_does_not() {
        let account = shape::<v1::Account>();
        assert_eq!(
            account,
            "struct[5:email 12:display_name 13:balance_cents ](str str u64 ) "
        );
        assert_ne!(account, shape::<v2::Account>());
        assert_ne!(account, shape::<v2::AccountPlus>());
        assert_eq!(account, shape::<moved::Customer>());
        assert_eq!(
            fingerprint::<v1::Account>(),
            fingerprint::<moved::Customer>()
        );
        assert_ne!(fingerprint::<v1::Account>(), fingerprint::<v2::Account>());
    }

    #[test]
    fn the_fingerprint_is_the_same_in_every_build() {
        // Stored in every entry and key: a new value turns every entry of
        // every user's deploy into a miss, so it changes only on purpose.
        assert_eq!(fingerprint::<v1::Account>(), 0xa267_af10_edba_3760);
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Status {
        Active,
        Suspended { reason: String, until: Option<u64> },
        Closed(u64),
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum StatusLastChanged {
        Active,
        Suspended { reason: String, until: Option<u64> },
        Closed(i64),
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum StatusReordered {
        Suspended { reason: String, until: Option<u64> },
        Active,
        Closed(u64),
    }

    #[test]
    fn every_variant_of_every_enum_is_traced() {
        let status = shape::<Status>();
        assert_eq!(
            status,
            "enum[6:Active(unit ) 9:Suspended(struct 6:reason 5:until str option( u64 ) ) 6:Closed(u64 ) ] "
        );
        assert_ne!(status, shape::<StatusLastChanged>());
        assert_ne!(status, shape::<StatusReordered>());
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Outer {
        Plain,
        Holding(Vec<Inner>),
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Inner {
        First,
        Second(bool),
        Third { value: String },
    }

    #[test]
    fn an_enum_reached_through_another_s_later_variant_is_traced_whole() {
        let outer = shape::<Outer>();
        assert!(outer.contains("5:Third(struct 5:value str )"), "{outer}");
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum List {
        Cons(u64, Box<List>),
        Nil,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Tree {
        label: String,
        children: Vec<Tree>,
        parent: Option<Box<Tree>>,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Expr {
        Add(Box<Expr>, Box<Expr>),
        Not(Box<Term>),
        Literal(i64),
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Term {
        Group(Box<Expr>),
        Variable(String),
    }

    #[test]
    fn recursive_types_are_traced_and_told_apart() {
        assert_eq!(
            shape::<List>(),
            "enum[4:Cons(tuple 2 u64 ^0 ) 3:Nil(unit ) ] "
        );
        assert_eq!(
            shape::<Tree>(),
            "struct[5:label 8:children 6:parent ](str seq( ^0 ) option( ^0 ) ) "
        );
        let expr = shape::<Expr>();
        assert!(expr.contains("5:Group(^0 )"), "{expr}");
        assert!(expr.contains("8:Variable(str )"), "{expr}");
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Collections {
        by_name: HashMap<String, Vec<(u8, char)>>,
        sorted: BTreeMap<u32, Option<f64>>,
        shared: Box<str>,
        bytes: [u8; 2],
        nothing: (),
    }

    #[test]
    fn containers_of_the_data_model_are_traced_through() {
        assert_eq!(
            shape::<Collections>(),
            "struct[7:by_name 6:sorted 6:shared 5:bytes 7:nothing ](map( str seq( tuple( 2 u8 char ) ) ) map( u32 option( f64 ) ) str tuple( 2 u8 u8 ) () ) "
        );
    }

    /// A type that validates what it reads, as a date or a UUID does.
    struct Date(String);

    impl<'de> Deserialize<'de> for Date {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
            let text = String::deserialize(deserializer)?;
            if text.len() == 20 && text.ends_with('Z') {
                Ok(Date(text))
            } else {
                Err(de::Error::custom("not a date"))
            }
        }
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Event {
        name: String,
        at: Date,
        count: std::num::NonZeroU32,
    }

    #[test]
    fn a_type_that_refuses_the_first_sample_is_traced_with_another() {
        assert_eq!(
            shape::<Event>(),
            "struct[4:name 2:at 5:count ](str str u32 ) "
        );
        let _ = Date(String::new()).0;
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    #[serde(untagged)]
    enum Untagged {
        Number(u64),
        Text(String),
    }

    #[test]
    fn a_type_that_needs_a_self_describing_format_falls_back_to_its_name() {
        assert!(matches!(
            trace::<serde_json::Value>(),
            Err(Failure::Unsupported("deserialize_any"))
        ));
        assert!(trace::<Untagged>().is_err());
        assert_eq!(
            fingerprint::<Untagged>(),
            digest(b"name", std::any::type_name::<Untagged>().as_bytes())
        );
        assert_ne!(
            fingerprint::<Untagged>(),
            fingerprint::<serde_json::Value>()
        );
    }

    /// A hand-written `Deserialize` that panics on what no format sends it.
    struct Fussy;

    impl<'de> Deserialize<'de> for Fussy {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fussy, D::Error> {
            let n = u8::deserialize(deserializer)?;
            assert!(n > 200, "never sent");
            Ok(Fussy)
        }
    }

    #[test]
    fn a_type_that_panics_while_traced_falls_back_to_its_name() {
        assert_eq!(
            fingerprint::<Fussy>(),
            digest(b"name", std::any::type_name::<Fussy>().as_bytes())
        );
    }

    #[test]
    fn a_fingerprint_is_remembered_per_traced_function() {
        let traced: fn() -> u64 = fingerprint::<v1::Account>;
        assert_eq!(remembered(traced), fingerprint::<v1::Account>());
        assert_eq!(remembered(traced), remembered(traced));
    }
}
