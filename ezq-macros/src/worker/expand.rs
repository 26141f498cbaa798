//! The companion that `#[worker]` emits beside the function.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::Type;

use super::signature::{Role, Shape, Worker};

/// The parameters of the generated `run`: a binding and a type for each
/// input queue, output queue and extra argument.
#[derive(Default)]
struct Ports {
    inputs: Vec<(Ident, Type)>,
    outputs: Vec<(Ident, Type)>,
    args: Vec<(Ident, Type)>,
}

/// A type of the worker's name (types and functions live in different
/// namespaces) implementing `WorkerFn`, which `pipeline!` names.
pub fn companion(worker: &Worker) -> TokenStream {
    let Worker { name, vis, .. } = worker;
    let name_str = name.to_string();
    let bindings: Vec<_> = (0..worker.params.len())
        .map(|i| format_ident!("__ezq_p{i}"))
        .collect();
    let mut ports = Ports::default();
    let body = match &worker.shape {
        Shape::Loop { ret } => {
            for (param, binding) in worker.params.iter().zip(&bindings) {
                let (list, ty) = match &param.role {
                    Role::Input(t) => (&mut ports.inputs, t),
                    Role::Output(t) => (&mut ports.outputs, t),
                    Role::Arg => (&mut ports.args, &param.ty),
                };
                list.push((binding.clone(), ty.clone()));
            }
            // Spanned on the return type: a worker returning something other
            // than `()` or `Result<(), E>` is reported there.
            quote_spanned! {*ret=>
                ::ezq::WorkerResult::into_result(#name(#(#bindings),*))
            }
        }
        Shape::Map {
            data,
            output,
            fallible,
        } => {
            let (inbox, outbox) = (format_ident!("__ezq_in"), format_ident!("__ezq_out"));
            ports.inputs.push((inbox.clone(), data.clone()));
            ports.outputs.push((outbox.clone(), output.clone()));
            for (param, binding) in worker.params.iter().zip(&bindings).skip(1) {
                ports.args.push((binding.clone(), param.ty.clone()));
            }
            let args = ports.args.iter().map(|(b, _)| b);
            let call = quote! {
                |__ezq_data| #name(__ezq_data #(, ::core::clone::Clone::clone(&#args))*)
            };
            if *fallible {
                quote!(::ezq::__private::try_map_messages(#inbox, #outbox, #call))
            } else {
                quote! {
                    ::ezq::__private::map_messages(#inbox, #outbox, #call);
                    ::core::result::Result::Ok(())
                }
            }
        }
    };
    let (in_bindings, in_types): (Vec<_>, Vec<_>) = ports.inputs.into_iter().unzip();
    let (out_bindings, out_types): (Vec<_>, Vec<_>) = ports.outputs.into_iter().unzip();
    let (arg_bindings, arg_types): (Vec<_>, Vec<_>) = ports.args.into_iter().unzip();
    let count = |types: &[Type]| Literal::usize_unsuffixed(types.len());
    let (reads, writes, args) = (count(&in_types), count(&out_types), count(&arg_types));
    let borrows = (arg_types.iter()).any(|ty| {
        (quote::ToTokens::to_token_stream(ty).to_string()).contains(super::signature::ARGS_LIFETIME)
    });
    let lifetime = syn::Lifetime::new(
        &format!("'{}", super::signature::ARGS_LIFETIME),
        proc_macro2::Span::call_site(),
    );
    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #name {}

        impl ::ezq::__private::WorkerFn for #name {
            const NAME: &'static str = #name_str;
            const READS: usize = #reads;
            const WRITES: usize = #writes;
            const ARGS: usize = #args;
            const BORROWS: bool = #borrows;
            type Inputs = (#(::ezq::__private::QueueRef<#in_types>,)*);
            type Outputs = (#(::ezq::__private::QueueRef<#out_types>,)*);
            type Args<#lifetime> = (#(#arg_types,)*);

            fn run(
                (#(#in_bindings,)*): (#(::ezq::Inbox<#in_types>,)*),
                (#(#out_bindings,)*): (#(::ezq::Outbox<#out_types>,)*),
                (#(#arg_bindings,)*): Self::Args<'_>,
            ) -> ::core::result::Result<(), ::std::string::String> {
                #body
            }
        }
    }
}
