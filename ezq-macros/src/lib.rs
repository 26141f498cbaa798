//! Procedural macros of ezq: `#[worker]` and `pipeline!`. Use them through
//! the `ezq` crate, which documents them in full.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod errors;
mod pipeline;
mod worker;

use proc_macro::TokenStream;

/// Declares a worker; see `ezq::worker`.
#[proc_macro_attribute]
pub fn worker(args: TokenStream, item: TokenStream) -> TokenStream {
    worker::worker(args.into(), item.into()).into()
}

/// Declares a worker graph; see `ezq::pipeline`.
#[proc_macro]
pub fn pipeline(input: TokenStream) -> TokenStream {
    pipeline::pipeline(input.into()).into()
}
