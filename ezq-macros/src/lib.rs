//! Procedural macros of ezq; use them through the `ezq` crate.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use proc_macro::TokenStream;

/// Declares a worker.
#[proc_macro_attribute]
pub fn worker(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// Declares a worker graph.
#[proc_macro]
pub fn pipeline(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
