//! Code generation from the checked graph: one line per queue, one per
//! worker, one for the handle, all calling `::ezq::__private`.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::Expr;

use super::graph::{Graph, Port};
use super::parse::{CapacityValue, RouteSpec};

/// The local variable of a queue's `QueueRef`: the queue's own name, with
/// macro hygiene (user expressions in the pipeline cannot see it, nor can it
/// shadow theirs) and the location of `mention`, so that a type mismatch on
/// the queue is reported at the user's token.
fn queue_var(mention: &Ident) -> Ident {
    Ident::new(
        &mention.to_string(),
        Span::mixed_site().located_at(mention.span()),
    )
}

/// An internal local variable, hygienic like the queue variables.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// A user expression without redundant outer parentheses, which would
/// trip `unused_parens` where it is passed as an argument.
fn unparen(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(paren) => unparen(&paren.expr),
        other => other,
    }
}

pub fn expand(graph: &Graph, cluster: Option<&Expr>) -> TokenStream {
    let (g, ends_var) = (local("__ezq_graph"), local("__ezq_ends"));
    let queues = graph.queues.iter().map(|q| {
        let var = queue_var(q.name);
        let name = q.name.to_string();
        let capacity = match q.capacity.and_then(|c| c.value.as_ref()) {
            None => quote!(::ezq::__private::Capacity::Default),
            Some(CapacityValue::Bounded(expr)) => {
                let expr = unparen(expr);
                quote!(::ezq::__private::Capacity::Bounded(#expr))
            }
            Some(CapacityValue::Unbounded) => quote!(::ezq::__private::Capacity::Unbounded),
        };
        match q.capacity {
            Some(spec) if spec.redis.is_some() => {
                let block = match spec.batch.as_ref().map(unparen) {
                    Some(batch) => quote!(::core::option::Option::Some(#batch)),
                    None => quote!(::core::option::Option::None),
                };
                // Spanned on `redis`, where a type that serde cannot carry is
                // reported.
                let span = spec.redis.as_ref().map_or(q.name.span(), Ident::span);
                quote_spanned!(span=> let #var = ::ezq::__private::redis_queue(&mut #g, #name, #capacity, #block);)
            }
            Some(spec) if spec.batch.is_some() => {
                let batch = spec.batch.as_ref().map(unparen);
                quote!(let #var = #g.batched_queue(#name, #capacity, #batch);)
            }
            Some(spec) if spec.value.is_some() => {
                quote!(let #var = #g.queue_with(#name, #capacity);)
            }
            _ => quote!(let #var = #g.queue(#name);),
        }
    });
    let workers = graph.workers.iter().map(|w| {
        let path = &w.syntax.path;
        let add = quote_spanned!(w.syntax.span()=> ::ezq::__private::worker::<#path>);
        let replicas = match &w.syntax.replicas {
            Some(r) => {
                let expr = unparen(&r.expr);
                quote!(#expr)
            }
            None => quote!(1),
        };
        let inputs = ports(&w.inputs);
        let outputs = ports(&w.outputs);
        let args = match &w.syntax.args {
            Some(args) => {
                let exprs = args.exprs.iter().map(unparen);
                quote_spanned!(args.span=> (#(#exprs,)*))
            }
            None => quote_spanned!(w.syntax.span()=> ()),
        };
        match &w.syntax.stack {
            Some(stack) => {
                let stack = unparen(stack);
                quote!(#add(&mut #g, #replicas, #inputs, #outputs, #args).stack_size(#stack);)
            }
            None => quote!(#add(&mut #g, #replicas, #inputs, #outputs, #args);),
        }
    });
    // After the workers: the queue's type is then known from them, so a key
    // function of another type is reported on the key, not on the queue.
    let routes = graph.queues.iter().filter_map(|q| {
        let route = q.route?;
        // The queue's variable located at the route's keyword: rustc
        // reports an unmet bound of the queue's type on that argument.
        let var = Ident::new(
            &q.name.to_string(),
            Span::mixed_site().located_at(route.keyword().span()),
        );
        Some(match route {
            RouteSpec::Keyed { key, .. } => {
                let span = syn::spanned::Spanned::span(key);
                let key = unparen(key);
                quote_spanned!(span=> ::ezq::__private::keyed(&mut #g, #var, #key);)
            }
            RouteSpec::Broadcast(keyword) => {
                let copies = quote_spanned!(keyword.span()=> ::ezq::__private::copies());
                quote!(::ezq::__private::broadcast(&mut #g, #var, #copies);)
            }
        })
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
        let var = queue_var(q.name);
        if q.is_source() {
            quote!(#ends_var.source(#var))
        } else {
            quote!(#ends_var.sink(#var))
        }
    });
    let cluster = cluster.map(|expr| {
        let expr = unparen(expr);
        quote!(::ezq::__private::cluster(&mut #g, #expr);)
    });
    quote! {{
        let mut #g = ::ezq::__private::Graph::new();
        #cluster
        #(#queues)*
        #(#workers)*
        #(#routes)*
        struct __EzqQueues<#(#params),*> { #(#fields: #params),* }
        #g.start(|#ends_var| __EzqQueues { #(#fields: #values),* })
    }}
}

/// The tuple of queue variables for one side of a worker, spanned on the
/// slot, so that a wrong number of queues is reported there.
fn ports(port: &Port) -> TokenStream {
    let vars = port.queues.iter().map(|&(_, mention)| queue_var(mention));
    quote_spanned!(port.span=> (#(#vars,)*))
}
