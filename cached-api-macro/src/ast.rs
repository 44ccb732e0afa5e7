//! A typed view of the function under the attribute.

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReceiverKind, ReturnType, Type,
};

/// The function, with what the expansion needs to know about it.
pub struct Function {
    pub item: ItemFn,
    /// Names bound by the parameters, in order; `self` excluded.
    pub bindings: Vec<Ident>,
    pub receiver: Receiver,
    pub output: Output,
}

/// How the function takes `self`, if it does.
pub enum Receiver {
    None,
    /// `&self`, `&mut self`, `self: &Self`-like forms the body can keep using.
    Borrowed,
    /// `self` or `mut self`: the body would consume the value, so caching
    /// cannot skip it; rejected in `valid`.
    Value(Span),
}

/// The shape of the return type, which decides what is cached.
#[derive(Clone)]
pub enum Output {
    /// No return type.
    Unit(Span),
    /// `impl Trait`: no type to store; rejected in `valid`.
    ImplTrait(Span),
    /// A type named `Result`, with the type of its `Ok` value.
    Result(Type),
    /// A type named `Option`, with the type of its `Some` value.
    Option(Type),
    /// Anything else, cached whole.
    Whole,
}

impl Function {
    pub fn parse(tokens: TokenStream) -> syn::Result<Function> {
        let item: ItemFn = syn::parse2(tokens).map_err(|error| {
            syn::Error::new(
                error.span(),
                format!("#[cached_api] applies to a `fn` or `async fn`: {error}"),
            )
        })?;
        let mut bindings = Vec::new();
        let mut receiver = Receiver::None;
        for input in &item.sig.inputs {
            match input {
                FnArg::Receiver(r) => {
                    receiver = match r.kind {
                        ReceiverKind::Value => Receiver::Value(r.span()),
                        _ => Receiver::Borrowed,
                    };
                }
                FnArg::Typed(typed) => collect_bindings(&typed.pat, &mut bindings),
            }
        }
        let output = match &item.sig.output {
            ReturnType::Default => Output::Unit(item.sig.ident.span()),
            ReturnType::Type(_, ty) => Output::of(ty),
        };
        Ok(Function {
            item,
            bindings,
            receiver,
            output,
        })
    }

    pub fn is_async(&self) -> bool {
        self.item.sig.asyncness.is_some()
    }

    pub fn has_receiver(&self) -> bool {
        !matches!(self.receiver, Receiver::None)
    }
}

impl Output {
    /// The shape of `ty`; for `Result` and `Option`, the shape of what they hold.
    pub fn of(ty: &Type) -> Output {
        match ty {
            Type::Paren(inner) => Output::of(&inner.elem),
            Type::Group(inner) => Output::of(&inner.elem),
            Type::ImplTrait(_) => Output::ImplTrait(ty.span()),
            Type::Path(path) if path.qself.is_none() => {
                let last = path.path.segments.last().expect("a path has a segment");
                match (
                    last.ident.to_string().as_str(),
                    first_type_argument(&last.arguments),
                ) {
                    ("Result", Some(ok)) => Output::Result(ok.clone()),
                    ("Option", Some(some)) => Output::Option(some.clone()),
                    _ => Output::Whole,
                }
            }
            _ => Output::Whole,
        }
    }
}

fn first_type_argument(arguments: &PathArguments) -> Option<&Type> {
    let PathArguments::AngleBracketed(angle) = arguments else {
        return None;
    };
    angle.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}

/// The names `pat` binds, in order.
pub fn collect_bindings(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => {
            out.push(p.ident.clone());
            if let Some((_, sub)) = &p.subpat {
                collect_bindings(sub, out);
            }
        }
        Pat::Paren(p) => collect_bindings(&p.pat, out),
        Pat::Reference(p) => collect_bindings(&p.pat, out),
        Pat::Slice(p) => p.elems.iter().for_each(|e| collect_bindings(e, out)),
        Pat::Tuple(p) => p.elems.iter().for_each(|e| collect_bindings(e, out)),
        Pat::TupleStruct(p) => p.elems.iter().for_each(|e| collect_bindings(e, out)),
        Pat::Struct(p) => p.fields.iter().for_each(|f| collect_bindings(&f.pat, out)),
        Pat::Type(p) => collect_bindings(&p.pat, out),
        _ => {}
    }
}
