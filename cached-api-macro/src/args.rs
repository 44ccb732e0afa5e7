//! The attribute's syntax: `name = value` pairs, each kept with its span.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, Ident, LitBool, LitFloat, LitInt, LitStr, Path, Token};

mod kw {
    syn::custom_keyword!(key);
    syn::custom_keyword!(user);
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(error_ttl);
    syn::custom_keyword!(none);
    syn::custom_keyword!(version);
    syn::custom_keyword!(name);
    syn::custom_keyword!(jitter);
    syn::custom_keyword!(l1);
    syn::custom_keyword!(refresh);
    syn::custom_keyword!(stale);
    syn::custom_keyword!(lock);
    syn::custom_keyword!(invalidate);
    syn::custom_keyword!(shared);
    syn::custom_keyword!(cache);
    syn::custom_keyword!(tags);
    syn::custom_keyword!(http);
    syn::custom_keyword!(max_age);
}

const VALID: &str = "key, user, shared, ttl, error_ttl, none, version, name, jitter, l1, refresh, stale, lock, invalidate, tags, http, max_age, cache, crate";

/// One argument: where its name was written, and its value.
pub struct Arg<T> {
    pub span: Span,
    pub value: T,
}

/// `key = "template:{arg}"` or `key = <expression>`.
pub enum KeyArg {
    Template(LitStr),
    Expr(Expr),
}

/// `ttl = 90` or `ttl = "15m"`.
pub enum DurationArg {
    Secs(LitInt),
    Text(LitStr),
}

/// `ttl = "15m"`, or `ttl = token_ttl`: a function of the stored value.
pub enum TtlArg {
    Fixed(DurationArg),
    FromValue(Path),
}

/// `l1 = true` or `l1 = "30s"` (a cap); `lock = true` or `lock = "5s"`.
pub enum SwitchOrDuration {
    Switch(LitBool),
    Duration(DurationArg),
}

/// `refresh = true` or `refresh = 2.0` (XFetch's β).
pub enum RefreshArg {
    Switch(LitBool),
    Beta(LitFloat),
}

/// Every argument, as written; meaning is checked in `valid`.
#[derive(Default)]
pub struct Args {
    pub key: Option<Arg<KeyArg>>,
    pub user: Option<Arg<Expr>>,
    /// `shared = true`: a global entry on a function that takes the caller
    /// is meant: the response is the same for every caller.
    pub shared: Option<Arg<LitBool>>,
    pub ttl: Option<Arg<TtlArg>>,
    pub error_ttl: Option<Arg<DurationArg>>,
    pub none: Option<Arg<LitBool>>,
    pub version: Option<Arg<LitInt>>,
    pub name: Option<Arg<LitStr>>,
    /// `jitter = "10%"`.
    pub jitter: Option<Arg<LitStr>>,
    pub l1: Option<Arg<SwitchOrDuration>>,
    pub refresh: Option<Arg<RefreshArg>>,
    /// `stale = "1m"`: how long past its TTL an entry may still answer.
    pub stale: Option<Arg<DurationArg>>,
    /// `lock = true` or `lock = "5s"`: a lease across processes on a miss.
    pub lock: Option<Arg<SwitchOrDuration>>,
    /// `invalidate = forget_profile`: the companion that drops one call's entry.
    pub invalidate: Option<Arg<Ident>>,
    /// `tags = ["org:{org_id}", "plans"]`: groups an invalidation drops at
    /// once, across functions.
    pub tags: Option<Arg<Vec<LitStr>>>,
    /// `http = true`: the axum handler answers conditional requests.
    pub http: Option<Arg<LitBool>>,
    /// `max_age = "30s"`: how long a client may keep an answer (`http`).
    pub max_age: Option<Arg<DurationArg>>,
    /// `cache = EU`: a `static` whose type derefs to `Cache`, used instead
    /// of the process-wide cache.
    pub cache: Option<Arg<Path>>,
    /// `crate = path`: where the facade is, for users who renamed it.
    pub krate: Option<Arg<Path>>,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = Args::default();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::key) {
                let span = input.parse::<kw::key>()?.span;
                let value = value(input, |input| {
                    if input.peek(LitStr) {
                        input.parse().map(KeyArg::Template)
                    } else {
                        input.parse().map(KeyArg::Expr)
                    }
                })?;
                set_once(&mut args.key, "key", span, value)?;
            } else if lookahead.peek(kw::user) {
                let span = input.parse::<kw::user>()?.span;
                set_once(&mut args.user, "user", span, value(input, Expr::parse)?)?;
            } else if lookahead.peek(kw::shared) {
                let span = input.parse::<kw::shared>()?.span;
                let value = value(input, LitBool::parse)?;
                set_once(&mut args.shared, "shared", span, value)?;
            } else if lookahead.peek(kw::ttl) {
                let span = input.parse::<kw::ttl>()?.span;
                let value = value(input, |input| {
                    if input.peek(Ident::peek_any) || input.peek(Token![::]) {
                        input.parse().map(TtlArg::FromValue)
                    } else {
                        duration(input).map(TtlArg::Fixed)
                    }
                })?;
                set_once(&mut args.ttl, "ttl", span, value)?;
            } else if lookahead.peek(kw::error_ttl) {
                let span = input.parse::<kw::error_ttl>()?.span;
                set_once(
                    &mut args.error_ttl,
                    "error_ttl",
                    span,
                    value(input, duration)?,
                )?;
            } else if lookahead.peek(kw::none) {
                let span = input.parse::<kw::none>()?.span;
                set_once(&mut args.none, "none", span, value(input, LitBool::parse)?)?;
            } else if lookahead.peek(kw::version) {
                let span = input.parse::<kw::version>()?.span;
                set_once(
                    &mut args.version,
                    "version",
                    span,
                    value(input, LitInt::parse)?,
                )?;
            } else if lookahead.peek(kw::name) {
                let span = input.parse::<kw::name>()?.span;
                set_once(
                    &mut args.name,
                    "name",
                    span,
                    value(input, <LitStr as Parse>::parse)?,
                )?;
            } else if lookahead.peek(kw::jitter) {
                let span = input.parse::<kw::jitter>()?.span;
                set_once(&mut args.jitter, "jitter", span, value(input, jitter)?)?;
            } else if lookahead.peek(kw::l1) {
                let span = input.parse::<kw::l1>()?.span;
                let value = value(input, switch_or_duration)?;
                set_once(&mut args.l1, "l1", span, value)?;
            } else if lookahead.peek(kw::refresh) {
                let span = input.parse::<kw::refresh>()?.span;
                let value = value(input, |input| {
                    if input.peek(LitBool) {
                        input.parse().map(RefreshArg::Switch)
                    } else if input.peek(LitInt) {
                        let int: LitInt = input.parse()?;
                        let float =
                            LitFloat::new(&format!("{}.0", int.base10_digits()), int.span());
                        Ok(RefreshArg::Beta(float))
                    } else {
                        input.parse().map(RefreshArg::Beta)
                    }
                })?;
                set_once(&mut args.refresh, "refresh", span, value)?;
            } else if lookahead.peek(kw::stale) {
                let span = input.parse::<kw::stale>()?.span;
                set_once(&mut args.stale, "stale", span, value(input, duration)?)?;
            } else if lookahead.peek(kw::lock) {
                let span = input.parse::<kw::lock>()?.span;
                let value = value(input, switch_or_duration)?;
                set_once(&mut args.lock, "lock", span, value)?;
            } else if lookahead.peek(kw::invalidate) {
                let span = input.parse::<kw::invalidate>()?.span;
                let value = value(input, Ident::parse)?;
                set_once(&mut args.invalidate, "invalidate", span, value)?;
            } else if lookahead.peek(kw::tags) {
                let span = input.parse::<kw::tags>()?.span;
                set_once(&mut args.tags, "tags", span, value(input, tag_list)?)?;
            } else if lookahead.peek(kw::http) {
                let span = input.parse::<kw::http>()?.span;
                set_once(&mut args.http, "http", span, value(input, LitBool::parse)?)?;
            } else if lookahead.peek(kw::max_age) {
                let span = input.parse::<kw::max_age>()?.span;
                set_once(&mut args.max_age, "max_age", span, value(input, duration)?)?;
            } else if lookahead.peek(kw::cache) {
                let span = input.parse::<kw::cache>()?.span;
                let value = value(input, |input| {
                    if input.peek(LitStr) {
                        Err(input.error(
                            "`cache` names a `static` whose type derefs to `Cache`, unquoted: `cache = EU`",
                        ))
                    } else {
                        input.parse()
                    }
                })?;
                set_once(&mut args.cache, "cache", span, value)?;
            } else if lookahead.peek(Token![crate]) {
                let span = input.parse::<Token![crate]>()?.span;
                set_once(&mut args.krate, "crate", span, value(input, crate_path)?)?;
            } else if input.peek(Ident) {
                let unknown: Ident = input.parse()?;
                let hint = match closest(&unknown.to_string()) {
                    Some(name) => format!("; did you mean `{name}`?"),
                    None => String::new(),
                };
                return Err(syn::Error::new(
                    unknown.span(),
                    format!("unknown argument `{unknown}`: expected one of {VALID}{hint}"),
                ));
            } else {
                return Err(lookahead.error());
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

/// The valid argument a slip of at most two letters away probably meant.
fn closest(unknown: &str) -> Option<&'static str> {
    VALID
        .split(", ")
        .map(|name| (edit_distance(unknown, name), name))
        .filter(|&(distance, _)| distance <= 2)
        .min()
        .map(|(_, name)| name)
}

/// Levenshtein distance: insertions, deletions and substitutions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `= value`, parsed by `parse`.
fn value<T>(input: ParseStream, parse: fn(ParseStream) -> syn::Result<T>) -> syn::Result<T> {
    input.parse::<Token![=]>()?;
    parse(input)
}

fn duration(input: ParseStream) -> syn::Result<DurationArg> {
    let lookahead = input.lookahead1();
    if lookahead.peek(LitInt) {
        input.parse().map(DurationArg::Secs)
    } else if lookahead.peek(LitStr) {
        input.parse().map(DurationArg::Text)
    } else if input.peek(Token![-]) {
        Err(input.error("a duration must be positive: seconds (`90`) or a string like \"15m\""))
    } else {
        Err(lookahead.error())
    }
}

/// `jitter = "10%"`; a bare number gets the quoted percent as its hint.
fn jitter(input: ParseStream) -> syn::Result<LitStr> {
    let hint = if input.peek(LitFloat) {
        let share: LitFloat = input.fork().parse()?;
        share
            .base10_parse::<f64>()
            .ok()
            .filter(|share| *share > 0.0 && *share < 1.0)
            .map(|share| format!("{}%", (share * 100.0).round()))
    } else if input.peek(LitInt) {
        let percent: LitInt = input.fork().parse()?;
        Some(format!("{}%", percent.base10_digits()))
    } else {
        return input.parse();
    };
    let hint = match hint {
        Some(hint) => format!("; did you mean `jitter = \"{hint}\"`?"),
        None => ", like `jitter = \"10%\"`".to_owned(),
    };
    Err(input.error(format!(
        "`jitter` is a percent of the TTL written as a string{hint}"
    )))
}

/// `["org:{org_id}", "plans"]`; a lone string gets the list as its hint.
fn tag_list(input: ParseStream) -> syn::Result<Vec<LitStr>> {
    if input.peek(LitStr) {
        let tag: LitStr = input.fork().parse()?;
        return Err(input.error(format!(
            "`tags` is a list of templates; write `tags = [{:?}]`",
            tag.value()
        )));
    }
    let content;
    syn::bracketed!(content in input);
    let tags = content.parse_terminated(<LitStr as Parse>::parse, Token![,])?;
    Ok(tags.into_iter().collect())
}

fn switch_or_duration(input: ParseStream) -> syn::Result<SwitchOrDuration> {
    if input.peek(LitBool) {
        input.parse().map(SwitchOrDuration::Switch)
    } else {
        duration(input).map(SwitchOrDuration::Duration)
    }
}

/// `crate = path`, or `crate = "path"` as serde spells it.
fn crate_path(input: ParseStream) -> syn::Result<Path> {
    if input.peek(LitStr) {
        input.parse::<LitStr>()?.parse_with(Path::parse_mod_style)
    } else {
        Path::parse_mod_style(input)
    }
}

fn set_once<T>(slot: &mut Option<Arg<T>>, name: &str, span: Span, value: T) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(
            span,
            format!("duplicate argument `{name}`"),
        ));
    }
    *slot = Some(Arg { span, value });
    Ok(())
}
