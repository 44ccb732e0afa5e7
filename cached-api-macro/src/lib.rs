//! The `#[cached_api]` attribute. Use it through the `cached-api` crate,
//! whose documentation describes the arguments.
//!
//! Steps, one file each: `args` parses the attribute's syntax, `ast` gives
//! a typed view of the function, `valid` checks what they mean and gathers
//! every error, `expand` writes tokens and cannot fail.

mod args;
mod ast;
mod expand;
mod template;
mod valid;

use proc_macro::TokenStream;

/// Caches the function's result; see the `cached-api` crate.
#[proc_macro_attribute]
pub fn cached_api(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let model = ast::Function::parse(item.clone())
        .and_then(|func| Ok((syn::parse::<args::Args>(args)?, func)))
        .and_then(|(args, func)| valid::check(args, func));
    match model {
        Ok(model) => expand::expand(&model).into(),
        Err(error) => expand::fallback(item, error).into(),
    }
}
