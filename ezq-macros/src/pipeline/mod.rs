//! `pipeline!`: parse → build and check the graph → expand.

mod expand;
mod graph;
mod parse;
#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;
use quote::quote;

use crate::errors::Errors;

/// The whole macro. Syntax errors stop everything; semantic errors are all
/// reported, beside the expansion, which stays well-typed so that the code
/// using the pipeline's handle reports nothing more.
pub fn pipeline(input: TokenStream) -> TokenStream {
    let pipeline: parse::Pipeline = match syn::parse2(input) {
        Ok(pipeline) => pipeline,
        Err(error) => return error.to_compile_error(),
    };
    let mut errors = Errors::default();
    let graph = graph::build(&pipeline, &mut errors);
    let expansion = expand::expand(&graph, pipeline.cluster.as_ref(), pipeline.scope.as_ref());
    if errors.is_empty() {
        expansion
    } else {
        let errors = errors.to_compile_errors();
        quote!({ #errors #expansion })
    }
}
