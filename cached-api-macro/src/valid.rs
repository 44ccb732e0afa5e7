//! What the arguments mean for this function: every check, every error
//! gathered, and the model that `expand` turns into tokens.

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, FnArg, GenericParam, LitBool, LitStr, Type};

use crate::args::{Arg, Args, DurationArg, KeyArg, RefreshArg, SwitchOrDuration, TtlArg};
use crate::ast::{Function, Output, Receiver};
use crate::caller;
use crate::template::{KeyTemplate, Piece};

/// What the function caches, checked.
pub struct Model {
    pub func: Function,
    pub name: Option<LitStr>,
    pub version: u32,
    /// `None`: the cache's default, or `ttl_of`'s.
    pub ttl_secs: Option<u64>,
    /// `ttl = path`: the function that gives each stored value its TTL.
    pub ttl_of: Option<syn::Path>,
    /// `None`: errors are not cached.
    pub error_ttl_secs: Option<u64>,
    /// Percent of the TTL by which each entry's TTL is shortened at random.
    pub jitter_percent: Option<u8>,
    /// `None`: no in-process tier; `Some(None)`: as long as the entry lives.
    pub l1_secs: Option<Option<u64>>,
    /// XFetch's β for refresh-ahead; `None`: off.
    pub refresh_beta: Option<f64>,
    /// How long past its TTL an entry may answer; `None`: not at all.
    pub stale_secs: Option<u64>,
    /// How long a lease across processes lasts; `None`: no lease.
    pub lock_secs: Option<u64>,
    /// `invalidate = name`: the companion that drops one call's entry.
    pub companion: Option<Companion>,
    /// Whether stale and due entries are recomputed in a task of their own
    /// (an async function with `stale` or `refresh` that borrows nothing):
    /// the span of the argument that asks for it, where an error about the
    /// task's needs (a `Send` body) points.
    pub detached: Option<Span>,
    pub key: Vec<KeyPart>,
    /// Characters of the template's literal text.
    pub reserved: String,
    /// Each tag, written as the key is (its text is not escaped by the
    /// template: a tag is its text, whichever function writes it).
    pub tags: Vec<Vec<KeyPart>>,
    pub user: Option<Expr>,
    pub policy: Policy,
    /// The type written to the store, for the check that names it.
    pub stored: Type,
    /// The facade's path: `::cached_api` unless `crate = …` says otherwise.
    pub krate: TokenStream,
    /// The `static` the function's cache is, if not the process-wide one.
    pub cache: Option<syn::Path>,
    /// `http = true`: the handler answers conditional requests; with
    /// `max_age`, the seconds a client may keep an answer.
    pub http: Option<Option<u64>>,
}

/// A function, beside the cached one, that drops the entry of one call.
pub struct Companion {
    pub name: Ident,
    /// The parameters the key and the user read, as the function declares
    /// them: all the companion needs to write the same key.
    pub inputs: Vec<FnArg>,
}

/// One step of writing the key.
pub enum KeyPart {
    Literal(String),
    Value(TokenStream),
}

/// Which part of the return value is cached.
#[derive(Clone, Copy)]
pub enum Policy {
    Whole,
    OkOnly,
    OkAndErr,
    SomeOnly,
}

/// What a cached function may return, for the messages that reject the rest.
const SHAPES: &str = "cacheable returns are a serializable type, `Json<T>`, `Html<T>` or `(StatusCode, Json<T>)` (with the `axum` feature), or a type implementing `cached_api::CachedResponse`, alone or inside `Result` or `Option`";

/// How long a lease taken with `lock = true` lasts: longer than most
/// computations behind an API handler, short enough that callers behind a
/// holder that died wait no longer than a slow request.
const DEFAULT_LEASE_SECS: u64 = 5;

/// Collects errors so that one compile shows all of them.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, span: Span, message: impl std::fmt::Display) {
        let error = syn::Error::new(span, message);
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }
}

pub fn check(args: Args, func: Function) -> syn::Result<Model> {
    let mut errors = Errors::default();
    check_signature(&func, &mut errors);

    let (ttl_secs, ttl_of) = match args.ttl.as_ref().map(|ttl| &ttl.value) {
        Some(TtlArg::Fixed(ttl)) => (seconds(ttl, "ttl", &mut errors), None),
        Some(TtlArg::FromValue(path)) => (None, Some(path.clone())),
        None => (None, None),
    };
    if let (Some(path), Some(invalidate)) = (&ttl_of, &args.invalidate) {
        errors.push(
            invalidate.span,
            format!(
                "`invalidate` cannot drop entries whose TTL `{}` chooses: a dropped entry's record must outlive the longest entry, which a TTL from the value does not bound; put the entry in a group of its own with `tags = [...]` and drop it with `invalidate_tag`",
                path.to_token_stream().to_string().replace(' ', "")
            ),
        );
    }
    let http = http(&args, &func, ttl_secs, &mut errors);
    let error_ttl_secs = args
        .error_ttl
        .as_ref()
        .and_then(|ttl| seconds(&ttl.value, "error_ttl", &mut errors));
    let jitter_percent = args.jitter.as_ref().and_then(|jitter| {
        percent(&jitter.value)
            .map_err(|message| errors.push(jitter.value.span(), message))
            .ok()
    });
    let l1_secs = args.l1.as_ref().and_then(|l1| {
        let secs = match &l1.value {
            SwitchOrDuration::Switch(on) if !on.value => return None,
            SwitchOrDuration::Switch(_) => None,
            SwitchOrDuration::Duration(cap) => Some(seconds(cap, "l1", &mut errors)?),
        };
        if !func.is_async() {
            errors.push(
                l1.span,
                "`l1` needs an async function: the in-process tier is kept coherent by Redis's pushes, which reach async calls only",
            );
        }
        Some(secs)
    });
    let refresh_beta = args.refresh.as_ref().and_then(|refresh| match &refresh.value {
        RefreshArg::Switch(on) => on.value.then_some(1.0),
        RefreshArg::Beta(beta) => match beta.base10_parse::<f64>() {
            Ok(beta) if beta > 0.0 && beta.is_finite() => Some(beta),
            _ => {
                errors.push(
                    beta.span(),
                    "`refresh` takes `true` or XFetch's β, a number above 0 such as `refresh = 2.0` (larger refreshes earlier)",
                );
                None
            }
        },
    });
    let stale_secs = args.stale.as_ref().and_then(|stale| {
        let secs = seconds(&stale.value, "stale", &mut errors)?;
        if args.ttl.is_none() {
            errors.push(
                stale.span,
                "`stale` extends the function's `ttl`, which it needs written here: e.g. `ttl = \"5m\", stale = \"1m\"`",
            );
        }
        Some(secs)
    });
    let version = args.version.as_ref().map_or(0, |version| {
        version.value.base10_parse::<u32>().unwrap_or_else(|_| {
            errors.push(
                version.value.span(),
                "`version` must be a whole number from 0 to 4294967295",
            );
            0
        })
    });
    if let Some(name) = &args.name
        && name.value.value().is_empty()
    {
        errors.push(
            name.value.span(),
            "`name` must not be empty: it identifies the function in keys and stats",
        );
    }
    let user = args.user.map(|user| {
        if !mentions_any(user.value.to_token_stream(), &func.bindings) {
            errors.push(
                user.value.span(),
                format!(
                    "`user` must be an expression over the function's arguments, e.g. `user = user_id` or `user = claims.sub`; {}",
                    arguments(&func)
                ),
            );
        }
        user.value
    });
    let (key, reserved) = match args.key {
        Some(Arg {
            value: KeyArg::Template(lit),
            ..
        }) => template_key(&lit, "key", &func, &mut errors),
        Some(Arg {
            value: KeyArg::Expr(expr),
            ..
        }) => {
            let span = expr.span();
            (
                vec![KeyPart::Value(quote_spanned!(span=> &(#expr)))],
                String::new(),
            )
        }
        None => (default_key(&func, user.as_ref()), String::new()),
    };
    let tags = tags(args.tags, &func, &mut errors);
    let (policy, stored) = policy(&func, &args.error_ttl, &args.none, &mut errors);
    // What the key and the user read: the parameters that tell entries apart.
    let read = key
        .iter()
        .filter_map(|part| match part {
            KeyPart::Value(tokens) => Some(tokens.clone()),
            KeyPart::Literal(_) => None,
        })
        .chain(user.iter().map(|user| user.to_token_stream()))
        .collect::<TokenStream>();
    check_caller(&func, &args.shared, user.is_some(), &read, &mut errors);
    let companion = args.invalidate.map(|invalidate| {
        let name = invalidate.value;
        if name == func.item.sig.ident {
            errors.push(
                name.span(),
                "`invalidate` names a new function beside this one: give it another name, e.g. `invalidate = forget_profile`",
            );
        }
        let inputs = func
            .item
            .sig
            .inputs
            .iter()
            .filter(|input| match input {
                FnArg::Receiver(receiver) => {
                    mentions_any(read.clone(), &[Ident::new("self", receiver.self_token.span)])
                }
                FnArg::Typed(typed) => {
                    let mut bindings = Vec::new();
                    crate::ast::collect_bindings(&typed.pat, &mut bindings);
                    mentions_any(read.clone(), &bindings)
                }
            })
            .cloned()
            .collect();
        Companion { name, inputs }
    });
    let lock_secs = args.lock.as_ref().and_then(|lock| {
        let secs = match &lock.value {
            SwitchOrDuration::Switch(on) => on.value.then_some(DEFAULT_LEASE_SECS)?,
            SwitchOrDuration::Duration(lease) => seconds(lease, "lock", &mut errors)?,
        };
        if matches!(&stored, Type::Tuple(unit) if unit.elems.is_empty()) {
            errors.push(
                lock.span,
                "`lock` makes other processes wait for this function's stored value, and `()` carries none: drop `lock`",
            );
        }
        Some(secs)
    });

    let asks_for_task = match (&args.stale, &args.refresh) {
        (Some(stale), _) if stale_secs.is_some() => Some(stale.span),
        (_, Some(refresh)) if refresh_beta.is_some() => Some(refresh.span),
        _ => None,
    };
    // A handler answering conditional requests recomputes in its caller.
    let detached =
        asks_for_task.filter(|_| func.is_async() && borrows_nothing(&func) && http.is_none());
    match errors.0 {
        Some(errors) => Err(errors),
        None => Ok(Model {
            func,
            name: args.name.map(|name| name.value),
            version,
            ttl_secs,
            ttl_of,
            error_ttl_secs,
            jitter_percent,
            l1_secs,
            refresh_beta,
            stale_secs,
            lock_secs,
            companion,
            detached,
            key,
            reserved,
            tags,
            user,
            policy,
            stored,
            krate: match args.krate {
                Some(krate) => krate.value.to_token_stream(),
                None => quote!(::cached_api),
            },
            cache: args.cache.map(|cache| cache.value),
            http,
        }),
    }
}

fn check_signature(func: &Function, errors: &mut Errors) {
    let sig = &func.item.sig;
    if let Receiver::Value(span) = func.receiver {
        errors.push(span, "#[cached_api] cannot take `self` by value: a hit would skip consuming it; take `&self`");
    }
    if let Some(constness) = &sig.constness {
        errors.push(constness.span, "#[cached_api] cannot apply to a `const fn`");
    }
    for param in &sig.generics.params {
        match param {
            GenericParam::Type(ty) => errors.push(
                ty.ident.span(),
                "#[cached_api] cannot cache a generic function: its instantiations would share entries; write one function per type",
            ),
            GenericParam::Const(constant) => errors.push(
                constant.ident.span(),
                format!(
                    "#[cached_api] cannot cache a function generic over `const {}`: its instantiations would share entries; take it as an argument and name it in the key, or write one function per value",
                    constant.ident
                ),
            ),
            GenericParam::Lifetime(_) => {}
        }
    }
    let held = match &func.output {
        Output::Unit(span) => {
            errors.push(*span, "#[cached_api] needs a return type: a function that returns nothing has nothing to cache");
            return;
        }
        Output::Result(inner) | Output::Option(inner) => Output::of(inner),
        other => other.clone(),
    };
    if let Output::ImplTrait(span) = held {
        errors.push(span, format!("#[cached_api] cannot cache an `impl Trait` return: name the concrete type; {SHAPES}"));
    }
}

/// A global entry of a function that takes the caller would serve the
/// first caller's result to every caller: refused unless the entry is per
/// user, the key reads the caller, or the attribute says `shared = true`.
fn check_caller(
    func: &Function,
    shared: &Option<Arg<LitBool>>,
    has_user: bool,
    read: &TokenStream,
    errors: &mut Errors,
) {
    let is_shared = shared.as_ref().is_some_and(|shared| shared.value.value);
    if let Some(shared) = shared
        && is_shared
        && has_user
    {
        errors.push(
            shared.span,
            "`shared = true` says one entry serves every caller, and `user` makes an entry per user: keep one of them",
        );
    }
    if has_user || is_shared {
        return;
    }
    let inputs: Vec<&FnArg> = func.item.sig.inputs.iter().collect();
    for (param, why) in caller::parameters(&inputs) {
        let mut bindings = Vec::new();
        crate::ast::collect_bindings(&param.pat, &mut bindings);
        if !bindings.is_empty() && mentions_any(read.clone(), &bindings) {
            continue;
        }
        let user = match bindings.first() {
            Some(binding) if why.binds_an_id() => format!("`user = {binding}`"),
            _ => "`user = …` (the caller's id)".to_owned(),
        };
        errors.push(
            param.span(),
            format!(
                "this parameter takes the caller: {}, and the entry is global (no `user`), so the first caller's result would be served to every caller. Add {user} for an entry per caller, read the caller in `key`, or write `shared = true` if the response is the same for every caller",
                why.reason()
            ),
        );
    }
}

fn policy(
    func: &Function,
    error_ttl: &Option<Arg<DurationArg>>,
    none: &Option<Arg<LitBool>>,
    errors: &mut Errors,
) -> (Policy, Type) {
    let whole = || match &func.item.sig.output {
        syn::ReturnType::Type(_, ty) => (**ty).clone(),
        syn::ReturnType::Default => syn::parse_quote!(()),
    };
    if let Some(error_ttl) = error_ttl
        && !matches!(func.output, Output::Result(_))
    {
        errors.push(
            error_ttl.span,
            "`error_ttl` applies only to functions returning `Result`",
        );
    }
    if let Some(none) = none
        && !matches!(func.output, Output::Option(_))
    {
        errors.push(
            none.span,
            "`none` applies only to functions returning `Option`",
        );
    }
    match &func.output {
        Output::Result(_) if error_ttl.is_some() => (Policy::OkAndErr, whole()),
        Output::Result(ok) => (Policy::OkOnly, ok.clone()),
        Output::Option(_) if none.as_ref().is_some_and(|none| none.value.value) => {
            (Policy::Whole, whole())
        }
        Output::Option(some) => (Policy::SomeOnly, some.clone()),
        _ => (Policy::Whole, whole()),
    }
}

/// `http = true` and its `max_age`: an async function without `self` (an
/// axum handler), a client's lifetime no longer than the entry's.
fn http(
    args: &Args,
    func: &Function,
    ttl_secs: Option<u64>,
    errors: &mut Errors,
) -> Option<Option<u64>> {
    let on = args.http.as_ref().filter(|http| http.value.value);
    let max_age = args.max_age.as_ref().and_then(|max_age| {
        if on.is_none() {
            errors.push(
                max_age.span,
                "`max_age` is how long an HTTP client may keep an answer: it needs `http = true`",
            );
        }
        let secs = seconds(&max_age.value, "max_age", errors)?;
        if let Some(ttl) = ttl_secs.filter(|&ttl| secs > ttl) {
            errors.push(
                max_age.span,
                format!("`max_age` ({secs} s) is longer than `ttl` ({ttl} s): a client would keep an answer the cache has dropped"),
            );
        }
        Some(secs)
    });
    let on = on?;
    if !func.is_async() {
        errors.push(
            on.span,
            "`http = true` answers an axum handler's conditional requests, and axum handlers are async: make the function `async`",
        );
    }
    if func.has_receiver() {
        errors.push(
            on.span,
            "`http = true` answers an axum handler's conditional requests: a handler takes no `self`",
        );
    }

    Some(max_age)
}

/// Most tags a function may carry; the runtime's bound, where each tag's
/// cost is said.
const MAX_TAGS: usize = 4;

/// `tags = [...]`: each a template, none repeated, at most [`MAX_TAGS`].
fn tags(tags: Option<Arg<Vec<LitStr>>>, func: &Function, errors: &mut Errors) -> Vec<Vec<KeyPart>> {
    let Some(tags) = tags else {
        return Vec::new();
    };
    if tags.value.is_empty() {
        errors.push(
            tags.span,
            "`tags = []` puts the entries in no group: name one (`tags = [\"plans\"]`), or drop `tags`",
        );
    }
    if tags.value.len() > MAX_TAGS {
        errors.push(
            tags.value[MAX_TAGS].span(),
            format!(
                "at most {MAX_TAGS} tags per function: each is one more generation every lookup checks; tag the groups invalidations drop"
            ),
        );
    }
    let mut written: Vec<String> = Vec::new();
    tags.value
        .iter()
        .map(|tag| {
            let text = tag.value();
            if written.contains(&text) {
                errors.push(tag.span(), format!("duplicate tag {text:?}"));
            }
            written.push(text);
            template_key(tag, "tag", func, errors).0
        })
        .collect()
}

fn template_key(
    lit: &LitStr,
    of: &str,
    func: &Function,
    errors: &mut Errors,
) -> (Vec<KeyPart>, String) {
    let template = match KeyTemplate::parse(&lit.value(), of) {
        Ok(template) => template,
        Err(message) => {
            errors.push(lit.span(), message);
            return (Vec::new(), String::new());
        }
    };
    for name in template.placeholders() {
        if name.contains('.') || name.contains("::") || name.contains('(') {
            let instead = if of == "key" {
                format!(
                    "write the key as an expression instead, e.g. `key = format!(\"…{{}}\", {name})`, or capture the argument whole"
                )
            } else {
                "capture the argument whole, or take the value as an argument of its own".to_owned()
            };
            errors.push(
                lit.span(),
                format!(
                    "placeholder `{{{name}}}` is an expression, and a template names arguments only; {instead}"
                ),
            );
            continue;
        }
        if !func.bindings.iter().any(|binding| binding == name) {
            errors.push(
                lit.span(),
                format!(
                    "no argument named `{name}` for placeholder `{{{name}}}`; {}",
                    arguments(func)
                ),
            );
        }
    }
    let parts = template
        .pieces
        .into_iter()
        .map(|piece| match piece {
            Piece::Literal(text) => Some(KeyPart::Literal(text)),
            Piece::Placeholder(name) => {
                // A name that is no argument was reported above; the
                // binding's own ident, since the text may be no identifier.
                let binding = func.bindings.iter().find(|binding| **binding == name)?;
                let mut ident = binding.clone();
                ident.set_span(lit.span());
                Some(KeyPart::Value(quote_spanned!(lit.span()=> &#ident)))
            }
        })
        .collect::<Option<_>>()
        .unwrap_or_default();
    (parts, template.reserved)
}

/// The names the function's parameters bind, for messages.
fn arguments(func: &Function) -> String {
    let known: Vec<String> = func.bindings.iter().map(Ident::to_string).collect();
    if known.is_empty() {
        "the function has none".to_owned()
    } else {
        format!("the function's arguments are: {}", known.join(", "))
    }
}

/// Every argument but the app's state and those the user expression
/// names, in order, `:`-separated.
fn default_key(func: &Function, user: Option<&Expr>) -> Vec<KeyPart> {
    let user_tokens = user.map(|user| user.to_token_stream()).unwrap_or_default();
    let app_state = app_state_bindings(func);
    let mut parts = Vec::new();
    for binding in &func.bindings {
        if app_state.contains(binding)
            || mentions_any(user_tokens.clone(), std::slice::from_ref(binding))
        {
            continue;
        }
        if !parts.is_empty() {
            parts.push(KeyPart::Literal(":".to_owned()));
        }
        parts.push(KeyPart::Value(quote_spanned!(binding.span()=> &#binding)));
    }
    parts
}

/// The names bound by parameters of the app's state rather than the
/// request's: axum's `State<…>` and actix's `Data<…>` (by the type's last
/// segment, as the extractors are written). The same for every request, so
/// they tell no entries apart, and are rarely a key.
fn app_state_bindings(func: &Function) -> Vec<Ident> {
    let mut bindings = Vec::new();
    for input in &func.item.sig.inputs {
        let FnArg::Typed(typed) = input else {
            continue;
        };
        let Type::Path(path) = &*typed.ty else {
            continue;
        };
        let last = path.path.segments.last().map(|segment| &segment.ident);
        if last.is_some_and(|ident| ident == "State" || ident == "Data") {
            crate::ast::collect_bindings(&typed.pat, &mut bindings);
        }
    }
    bindings
}

/// `"10%"`: a whole percent from 1 to 50. More would let entries written
/// together live from a fraction of their TTL; a bare number is a slip.
fn percent(lit: &LitStr) -> Result<u8, String> {
    let text = lit.value();
    let Some(number) = text.trim().strip_suffix('%') else {
        return Err(format!(
            "`jitter` is a percent of the TTL, like \"10%\"; did you mean \"{}%\"?",
            text.trim()
        ));
    };
    match number.trim().parse::<u8>() {
        Ok(percent @ 1..=50) => Ok(percent),
        Ok(0) => Err("`jitter = \"0%\"` jitters nothing; leave `jitter` out".to_owned()),
        _ => Err(format!(
            "`jitter` must be a whole percent from 1% to 50%, not {text:?}: more would let entries written together live for a fraction of their TTL"
        )),
    }
}

/// The duration in whole seconds, checked by the grammar the runtime shares.
fn seconds(duration: &DurationArg, what: &str, errors: &mut Errors) -> Option<u64> {
    let (span, text) = match duration {
        DurationArg::Secs(lit) if !lit.suffix().is_empty() => {
            // `ttl = 15m` is the integer 15 with a suffix `m` to Rust.
            let written = format!("{}{}", lit.base10_digits(), lit.suffix());
            errors.push(
                lit.span(),
                format!(
                    "`{what} = {written}` is not a duration: without quotes it is the integer {} with a suffix; write `{what} = \"{written}\"`, or `{what} = {}` for seconds",
                    lit.base10_digits(),
                    lit.base10_digits()
                ),
            );
            return None;
        }
        DurationArg::Secs(lit) => (lit.span(), lit.base10_digits().to_owned()),
        DurationArg::Text(lit) => (lit.span(), lit.value()),
    };
    match cached_api_duration::parse(&text) {
        Ok(duration) => Some(duration.as_secs()),
        Err(error) => {
            // A function's name in quotes: `ttl = "token_ttl"`.
            let names_a_function = what == "ttl"
                && syn::parse_str::<syn::Path>(&text).is_ok()
                && !text.starts_with(|c: char| c.is_ascii_digit());
            let hint = if names_a_function {
                format!(
                    "; to take each value's TTL from a function, name it without quotes: `ttl = {text}`"
                )
            } else {
                String::new()
            };
            errors.push(span, format!("`{what}`: {error}{hint}"));
            None
        }
    }
}

/// Whether the function's future can own everything it uses: no `self`,
/// and no parameter type with a reference or a lifetime in it. (A lifetime
/// elided inside a path, `Ref<T>` for `Ref<'_, T>`, cannot be seen here:
/// such a function fails to compile with `stale` or `refresh` unless it
/// writes the lifetime.)
fn borrows_nothing(func: &Function) -> bool {
    fn owned(tokens: TokenStream) -> bool {
        tokens.into_iter().all(|tree| match tree {
            TokenTree::Punct(punct) => punct.as_char() != '&' && punct.as_char() != '\'',
            TokenTree::Group(group) => owned(group.stream()),
            TokenTree::Ident(ident) => ident != "impl" && ident != "dyn",
            TokenTree::Literal(_) => true,
        })
    }
    func.item.sig.inputs.iter().all(|input| match input {
        FnArg::Receiver(_) => false,
        FnArg::Typed(typed) => owned(typed.ty.to_token_stream()),
    })
}

fn mentions_any(tokens: TokenStream, bindings: &[Ident]) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => bindings.contains(&ident),
        TokenTree::Group(group) => mentions_any(group.stream(), bindings),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    /// Every template of up to four characters over an alphabet of the
    /// characters templates trip on: the attribute answers each with a
    /// model or an error, and never panics.
    #[test]
    fn no_template_makes_the_attribute_panic() {
        let alphabet = [
            '{', '}', 'q', '.', '1', ' ', '%', ':', 'x', '_', '#', 'é', '(',
        ];
        let mut templates = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..4 {
            last = last
                .iter()
                .flat_map(|prefix| alphabet.iter().map(move |c| format!("{prefix}{c}")))
                .collect();
            templates.extend(last.iter().cloned());
        }
        templates.extend(
            [
                "{q.page}",
                "{self.prefix}:{x}",
                "{1x}",
                "{r#type}",
                "{x::y}",
                "{f(x)}",
            ]
            .map(str::to_owned),
        );
        for template in &templates {
            let func = Function::parse(quote! {
                fn f(x: u64, q: u8, r#type: u8, _x: u8) -> u64 { x }
            })
            .unwrap();
            let args: Args = syn::parse2(quote!(key = #template)).unwrap();
            let _ = check(args, func);
        }
        assert!(templates.len() > 30_000);
    }
}
