//! `#[worker]`: a function declared as a worker gets a companion type of the
//! same name (in the type namespace) that tells `pipeline!` its queues and
//! arguments.

mod expand;
mod signature;
#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;
use quote::quote;

use crate::errors::Errors;

/// The whole attribute: analyse the signature, then expand. On error the
/// function is emitted unchanged beside the errors, so editors keep working.
pub fn worker(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    if let Some(arg) = args.into_iter().next() {
        errors.at(
            arg.span(),
            "`#[worker]` takes no arguments: the worker's name, queues and arguments all come from its signature",
        );
    }
    let function = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Fn(function)) => function,
        Ok(other) => {
            errors.at(
                syn::spanned::Spanned::span(&other),
                "`#[worker]` applies to a function: `#[worker] fn name(inbox: Inbox<T>, outbox: Outbox<U>) { ... }`",
            );
            let errors = errors.to_compile_errors();
            return quote! { #errors #item };
        }
        Err(error) => return error.to_compile_error(),
    };
    let worker = signature::analyse(&function, &mut errors);
    match worker {
        Some(worker) if errors.is_empty() => {
            let companion = expand::companion(&worker);
            if let Some(span) = worker.message_borrows {
                errors.at(span, signature::BORROWED_MESSAGE);
            }
            let errors = errors.to_compile_errors();
            // A worker owns its inbox and outbox: dropping the outbox is how
            // its queue learns that this producer is done. Taking them by
            // value is the point, whatever clippy's pedantic group says.
            quote! {
                #errors
                #[allow(clippy::needless_pass_by_value)]
                #function
                #companion
            }
        }
        _ => {
            let errors = errors.to_compile_errors();
            quote! { #errors #function }
        }
    }
}
