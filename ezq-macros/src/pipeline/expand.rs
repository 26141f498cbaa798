//! Code generation from the checked graph: one line per queue, one per
//! worker, one for the handle, all calling `::ezq::__private`.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use super::graph::{Graph, Port};
use super::parse::CapacityValue;

/// The local variable of a queue's `QueueRef`, spanned on `mention` so that
/// a type mismatch on the queue is reported at the user's token.
fn queue_var(name: &Ident, span: Span) -> Ident {
    format_ident!("__ezq_{}", name, span = span)
}

pub fn expand(graph: &Graph) -> TokenStream {
    let queues = graph.queues.iter().map(|q| {
        let var = queue_var(q.name, q.name.span());
        let name = q.name.to_string();
        match q.capacity.map(|c| &c.value) {
            None => quote!(let #var = __ezq_graph.queue(#name);),
            Some(value) => {
                let capacity = match value {
                    CapacityValue::Bounded(expr) => {
                        quote!(::ezq::__private::Capacity::Bounded(#expr))
                    }
                    CapacityValue::Unbounded => quote!(::ezq::__private::Capacity::Unbounded),
                };
                quote!(let #var = __ezq_graph.queue_with(#name, #capacity);)
            }
        }
    });
    let workers = graph.workers.iter().map(|w| {
        let path = &w.syntax.path;
        let add = quote_spanned!(w.syntax.span()=> ::ezq::__private::worker::<#path>);
        let replicas = match &w.syntax.replicas {
            Some(r) => {
                let expr = &r.expr;
                quote!(#expr)
            }
            None => quote!(1),
        };
        let inputs = ports(graph, &w.inputs);
        let outputs = ports(graph, &w.outputs);
        let args = match &w.syntax.args {
            Some(args) => {
                let exprs = args.exprs.iter();
                quote_spanned!(args.span=> (#(#exprs,)*))
            }
            None => quote_spanned!(w.syntax.span()=> ()),
        };
        quote!(#add(&mut __ezq_graph, #replicas, #inputs, #outputs, #args);)
    });
    let ends: Vec<_> = (graph.queues.iter().filter(|q| q.is_source()))
        .chain(
            graph
                .queues
                .iter()
                .filter(|q| q.is_sink() && !q.is_source()),
        )
        .collect();
    let fields: Vec<_> = ends.iter().map(|q| q.name).collect();
    let params: Vec<_> = (0..ends.len()).map(|i| format_ident!("T{i}")).collect();
    let values = ends.iter().map(|q| {
        let var = queue_var(q.name, q.name.span());
        if q.is_source() {
            quote!(__ezq_c.source(#var))
        } else {
            quote!(__ezq_c.sink(#var))
        }
    });
    quote! {{
        let mut __ezq_graph = ::ezq::__private::Graph::new();
        #(#queues)*
        #(#workers)*
        struct __EzqQueues<#(#params),*> { #(#fields: #params),* }
        __ezq_graph.start(|__ezq_c| __EzqQueues { #(#fields: #values),* })
    }}
}

/// The tuple of queue variables for one side of a worker, spanned on the
/// slot, so that a wrong number of queues is reported there.
fn ports(_graph: &Graph, port: &Port) -> TokenStream {
    let vars = port.queues.iter().map(|&(_, mention)| {
        let var = mention.to_string();
        format_ident!("__ezq_{}", var, span = mention.span())
    });
    quote_spanned!(port.span=> (#(#vars,)*))
}
