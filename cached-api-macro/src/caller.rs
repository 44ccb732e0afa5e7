//! Which parameters carry the caller's identity: a global entry computed
//! from one caller's data would be served to every caller.
//!
//! The attribute sees tokens, not types, so the rule is by name. A
//! parameter takes the caller when its type is one of [`CALLER_TYPES`]
//! (the request's headers, cookies, or an extension a middleware put
//! there), or when a word of its type or of the names it binds starts
//! with one of [`CALLER_WORDS`] (`AuthUser`, `claims`, `session_id`,
//! `Principal`). Parameters whose type is one of [`REQUEST_PARTS`] (the
//! app's state, the URL's path and query, a body) are never the caller,
//! whatever they hold or are called.

use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{FnArg, PatType, Type};

/// Extractors that hand a handler the caller's request, wholly or in part.
pub const CALLER_TYPES: &[&str] = &[
    "HeaderMap",
    "TypedHeader",
    "CookieJar",
    "SignedCookieJar",
    "PrivateCookieJar",
    "Extension",
];

/// Words that name the caller, or what identifies one, at the start of a
/// word of an identifier (`AuthUser` is `auth` `user`; `users` starts with `user`).
pub const CALLER_WORDS: &[&str] = &[
    "auth",
    "user",
    "claims",
    "session",
    "principal",
    "identity",
    "caller",
    "token",
    "account",
    "tenant",
    "jwt",
    "bearer",
    "cookie",
    "credential",
];

/// Extractors of what is not the caller's identity: the app's own state,
/// and the parts of a request that a cache key may already read.
pub const REQUEST_PARTS: &[&str] = &["State", "Path", "Query", "Json", "Form"];

/// Why a parameter is taken for the caller.
pub enum Caller {
    /// Its type is one of [`CALLER_TYPES`], named here.
    Type(String),
    /// A word of its type names the caller: the type, and the word.
    TypeWord(String, &'static str),
    /// A word of a name it binds names the caller: the name, and the word.
    Binding(Ident, &'static str),
}

impl Caller {
    /// What the parameter is, for the error.
    pub fn reason(&self) -> String {
        match self {
            Caller::Type(ty) => format!("`{ty}` hands the handler the caller's request"),
            Caller::TypeWord(ty, word) => format!("its type `{ty}` names the caller (`{word}`)"),
            Caller::Binding(name, word) => format!("`{name}` names the caller (`{word}`)"),
        }
    }

    /// Whether the names the parameter binds are the caller's id itself,
    /// rather than a request to read one from.
    pub fn binds_an_id(&self) -> bool {
        !matches!(self, Caller::Type(_))
    }
}

/// The parameters of `inputs` that take the caller, with why.
pub fn parameters<'f>(inputs: &[&'f FnArg]) -> Vec<(&'f PatType, Caller)> {
    inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(typed) => Some(typed),
            FnArg::Receiver(_) => None,
        })
        .filter_map(|typed| why_caller(typed).map(|why| (typed, why)))
        .collect()
}

fn why_caller(typed: &PatType) -> Option<Caller> {
    let outer = outermost(&typed.ty);
    if let Some(outer) = &outer {
        if REQUEST_PARTS.iter().any(|part| outer == part) {
            return None;
        }
        if CALLER_TYPES.iter().any(|caller| outer == caller) {
            return Some(Caller::Type(outer.clone()));
        }
    }
    let mut idents = Vec::new();
    collect_idents(typed.ty.to_token_stream(), &mut idents);
    if let Some((ident, word)) = idents
        .iter()
        .find_map(|ident| caller_word(ident).map(|word| (ident, word)))
    {
        return Some(Caller::TypeWord(ident.to_string(), word));
    }
    idents.clear();
    collect_idents(typed.pat.to_token_stream(), &mut idents);
    idents
        .into_iter()
        .find_map(|ident| caller_word(&ident).map(|word| Caller::Binding(ident, word)))
}

/// The last segment of the type's path, under references and parentheses.
fn outermost(ty: &Type) -> Option<String> {
    match ty {
        Type::Reference(reference) => outermost(&reference.elem),
        Type::Paren(inner) => outermost(&inner.elem),
        Type::Group(inner) => outermost(&inner.elem),
        Type::Path(path) => path
            .path
            .segments
            .last()
            .map(|segment| segment.ident.to_string()),
        _ => None,
    }
}

fn collect_idents(tokens: TokenStream, out: &mut Vec<Ident>) {
    for tree in tokens {
        match tree {
            TokenTree::Ident(ident) => out.push(ident),
            TokenTree::Group(group) => collect_idents(group.stream(), out),
            _ => {}
        }
    }
}

/// The word of `ident` that names the caller, if one does.
fn caller_word(ident: &Ident) -> Option<&'static str> {
    let name = ident.to_string();
    words(name.trim_start_matches("r#")).find_map(|word| {
        CALLER_WORDS
            .iter()
            .find(|caller| word.starts_with(*caller))
            .copied()
    })
}

/// The words of an identifier, lower-cased: split at `_` and before each
/// upper-case letter that follows a lower-case one.
fn words(name: &str) -> impl Iterator<Item = String> + '_ {
    name.split('_').flat_map(|part| {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut previous_lower = false;
        for c in part.chars() {
            if c.is_uppercase() && previous_lower {
                words.push(std::mem::take(&mut word));
            }
            previous_lower = c.is_lowercase() || c.is_ascii_digit();
            word.extend(c.to_lowercase());
        }
        words.push(word);
        words.into_iter().filter(|word| !word.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(param: &str) -> Option<String> {
        let input: FnArg = syn::parse_str(param).unwrap();
        parameters(&[&input]).first().map(|(_, why)| why.reason())
    }

    #[test]
    fn the_caller_is_found_by_type_and_by_name() {
        for param in [
            "AuthUser(id): AuthUser",
            "claims: Claims",
            "headers: HeaderMap",
            "TypedHeader(auth): TypedHeader<Authorization<Bearer>>",
            "jar: CookieJar",
            "Extension(current): Extension<CurrentUser>",
            "session_id: String",
            "user: &str",
            "tenant: TenantId",
            "who: Option<Principal>",
            "token: &str",
        ] {
            assert!(caller(param).is_some(), "{param}");
        }
    }

    #[test]
    fn state_path_query_bodies_and_plain_ids_are_not_the_caller() {
        for param in [
            "State(state): State<AppState>",
            "State(users): State<UserStore>",
            "Path(user_id): Path<u64>",
            "Query(q): Query<UserSearch>",
            "Json(body): Json<UpdateUser>",
            "id: u64",
            "plan_id: u64",
            "db: &Db",
            "page: Option<u32>",
            "usage: Usage",
        ] {
            assert_eq!(caller(param), None, "{param}");
        }
    }

    #[test]
    fn identifiers_split_into_words() {
        let split = |name| words(name).collect::<Vec<_>>();
        assert_eq!(split("AuthUser"), ["auth", "user"]);
        assert_eq!(split("session_id"), ["session", "id"]);
        assert_eq!(split("HTTPClient"), ["httpclient"]);
        assert_eq!(split("v2Token"), ["v2", "token"]);
    }
}
