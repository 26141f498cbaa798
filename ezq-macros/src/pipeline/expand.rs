//! Code generation from the checked graph: one line per queue, one per
//! worker, one for the handle, all calling `::ezq::__private`. Before them,
//! each worker's name is bound to an alias, so that a function without
//! `#[worker]` can be told apart from a worker (see `::ezq::__private`'s
//! notes on `Shape`).

use std::collections::HashMap;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::Expr;

use super::graph::{Graph, Port, Worker};
use super::parse::{CapacityValue, RouteSpec};

/// The local variable of a queue's `QueueRef`: the queue's own name, with
/// macro hygiene (user expressions in the pipeline cannot see it, nor can it
/// shadow theirs) and the location of `mention`, so that an error on the
/// queue is reported at the user's token.
fn queue_var(mention: &Ident) -> Ident {
    let mut var = mention.clone();
    var.set_span(Span::mixed_site().located_at(mention.span()));
    var
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

pub fn expand(graph: &Graph, cluster: Option<&Expr>, scope: Option<&Expr>) -> TokenStream {
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
                quote_spanned!(span=> let #var = #g.redis_queue(#name, #capacity, #block);)
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
    let aliases = Aliases::of(graph);
    let mut uses = Uses::default();
    let workers = graph.workers.iter().map(|w| {
        let alias = aliases.of_worker(w);
        let check = check(w, &alias, scope.is_some());
        let add = quote_spanned!(w.syntax.span()=> ::ezq::__private::worker::<#alias, #check>);
        let replicas = match &w.syntax.replicas {
            Some(r) => {
                let expr = unparen(&r.expr);
                quote!(#expr)
            }
            None => quote!(1),
        };
        let inputs = uses.ports(graph, w, &w.inputs, Role::Reads);
        let outputs = uses.ports(graph, w, &w.outputs, Role::Writes);
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
    // Collected first: the order of the uses decides which use of a queue
    // gives it its type.
    let workers: Vec<_> = workers.collect();
    let (fallbacks, imports) = (aliases.fallbacks(), aliases.imports());
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
                quote_spanned!(span=> #g.route_by_key(#var, #key);)
            }
            RouteSpec::Broadcast(keyword) => {
                quote_spanned!(keyword.span()=> #g.route_to_all(#var);)
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
        quote!(#g.cluster(#expr);)
    });
    let handle = quote!(|#ends_var| __EzqQueues { #(#fields: #values),* });
    let start = match scope.map(unparen) {
        Some(scope) => quote!(#g.start_in(#scope, #handle)),
        None => quote!(#g.start(#handle)),
    };
    quote! {{
        #fallbacks
        {
            #imports
            let mut #g = ::ezq::__private::Graph::new();
            #cluster
            #(#queues)*
            #(#workers)*
            #(#routes)*
            struct __EzqQueues<#(#params),*> { #(#fields: #params),* }
            #start
        }
    }}
}

/// One alias per distinct worker name, `__ezq_w0`, `__ezq_w1`, ..: the
/// worker's companion type, or `PlainFn` for a name that has none.
struct Aliases<'a> {
    /// The worker paths as written, in order of first use.
    paths: Vec<&'a syn::Path>,
    index: HashMap<String, usize>,
}

impl<'a> Aliases<'a> {
    fn of(graph: &Graph<'a>) -> Self {
        let mut aliases = Aliases {
            paths: Vec::new(),
            index: HashMap::new(),
        };
        for w in &graph.workers {
            let key = w.syntax.name();
            if !aliases.index.contains_key(&key) {
                aliases.index.insert(key, aliases.paths.len());
                aliases.paths.push(&w.syntax.path);
            }
        }
        aliases
    }

    /// An item's name resolves at the call site whatever its span, so the
    /// alias may carry the user's span, where its errors are reported.
    fn alias(i: usize, span: Span) -> Ident {
        Ident::new(&format!("__ezq_w{i}"), span)
    }

    fn of_worker(&self, w: &Worker) -> Ident {
        Self::alias(self.index[&w.syntax.name()], w.syntax.span())
    }

    /// The fallbacks, glob-imported in the outer block of the expansion.
    fn fallbacks(&self) -> TokenStream {
        let fallbacks = (0..self.paths.len()).map(|i| {
            let alias = Self::alias(i, Span::call_site());
            quote!(PlainFn as #alias)
        });
        quote! {
            #[allow(unused_imports)]
            mod __ezq_workers {
                pub(crate) use ::ezq::__private::NotAWorker as _;
                pub(crate) use ::ezq::__private::{#(#fallbacks),*};
            }
            #[allow(unused_imports)]
            use __ezq_workers::*;
        }
    }

    /// The worker names, imported over the fallbacks in the inner block.
    /// Each import is located on the user's path: an unknown name is
    /// reported there, and, being in an inner block, its failed import
    /// hides the fallback, so that nothing more is reported about it.
    fn imports(&self) -> TokenStream {
        let names = self.paths.iter().enumerate().map(|(i, path)| {
            let (_, last) = ends(path);
            let alias = Self::alias(i, last);
            quote_spanned!(last=> #path as #alias)
        });
        quote!(#[allow(unused_imports)] use {#(#names),*};)
    }
}

/// The compile-time checks of one use of a worker, as a const generic
/// argument of `worker`; `scoped` if the pipeline runs in a scope (its
/// workers may borrow). Each call is spanned on the token it checks, from
/// its first token to its last, so that its error is reported there.
fn check(w: &Worker, alias: &Ident, scoped: bool) -> TokenStream {
    let name = w.syntax.name();
    let count = |n: usize| Literal::usize_unsuffixed(n);
    let (reads, writes) = (count(w.inputs.queues.len()), count(w.outputs.queues.len()));
    let (args, args_span) = match &w.syntax.args {
        Some(args) => (count(args.exprs.len()), args.span),
        None => (count(0), w.syntax.span()),
    };
    let shape = local("shape");
    // A call's span runs from its first token to its last.
    let call = |(first, last): (Span, Span), method: &str, arg: TokenStream| {
        let method = Ident::new(method, first);
        let call = quote_spanned!(last=> (#shape, #arg));
        quote_spanned!(first=> ::ezq::__private::Shape::#method #call)
    };
    let is_worker = call(ends(&w.syntax.path), "worker", quote!(#name));
    let reads = call((w.inputs.span, w.inputs.span), "reads", quote!(#reads));
    let writes = call((w.outputs.span, w.outputs.span), "writes", quote!(#writes));
    let args = call((args_span, args_span), "args", quote!(#args));
    // Outside a scope, a borrowed argument is reported on the arguments.
    let owned = (!scoped).then(|| {
        let owned = quote_spanned!(args_span=> ::ezq::__private::Shape::owned(#shape));
        quote!(let #shape = #owned;)
    });
    quote!({
        let #shape = <::ezq::__private::Probe<#alias>>::SHAPE;
        let #shape = #is_worker;
        let #shape = #reads;
        let #shape = #writes;
        #owned
        #args
    })
}

/// The spans of a path's first and last segments: joining them is not
/// available to a proc macro on stable Rust, but rustc joins an
/// expression's first and last tokens.
fn ends(path: &syn::Path) -> (Span, Span) {
    let span = |s: Option<&syn::PathSegment>| s.map_or_else(Span::call_site, |s| s.ident.span());
    let first = match path.leading_colon {
        Some(colon) => colon.spans[0],
        None => span(path.segments.first()),
    };
    (first, span(path.segments.last()))
}

#[derive(Clone, Copy)]
enum Role {
    Reads,
    Writes,
}

/// How each queue was first used, in the order rustc meets the uses: that
/// use gives the queue its type.
#[derive(Default)]
struct Uses {
    first: HashMap<usize, (String, Role)>,
}

impl Uses {
    /// The tuple of queue variables for one side of a worker, spanned on
    /// the slot. A queue's first use passes its variable, which gives it its
    /// type; a later use passes it through a check of that type.
    fn ports(&mut self, graph: &Graph, w: &Worker, port: &Port, role: Role) -> TokenStream {
        let worker = w.syntax.name();
        let vars = port.queues.iter().map(|&(q, mention)| {
            let var = queue_var(mention);
            match self.first.get(&q) {
                None => {
                    self.first.insert(q, (worker.clone(), role));
                    quote!(#var)
                }
                Some((first, first_role)) => {
                    let queue = graph.queues[q].name;
                    same_type(queue, mention, (first, *first_role), (&worker, role))
                }
            }
        });
        let vars: Vec<_> = vars.collect();
        quote_spanned!(port.span=> (#(#vars,)*))
    }
}

/// A later use of `queue` (at `mention`, by `this`) that must carry the type
/// its first use gave it. A local trait, named after the queue, says so
/// when they differ: its message names the queue, both workers and both
/// types, and a trait of the user's crate prints without `ezq`'s paths.
fn same_type(
    queue: &Ident,
    mention: &Ident,
    (first, first_role): (&str, Role),
    (this, role): (&str, Role),
) -> TokenStream {
    // The type parameter, which the trait's own name must not shadow.
    let t = if queue == "T" { "U" } else { "T" };
    let first_use = match first_role {
        Role::Reads => "read",
        Role::Writes => "written",
    };
    let (this_use, label) = match role {
        Role::Reads => (
            format!("`{this}` reads it as `{{Self}}`"),
            format!("`{this}` reads `{{Self}}`"),
        ),
        Role::Writes => (
            format!("`{this}` writes `{{Self}}` to it"),
            format!("`{this}` writes `{{Self}}`"),
        ),
    };
    let message =
        format!("queue `{queue}` is {first_use} as `{{{t}}}` by `{first}`, but {this_use}");
    let note = format!("a queue carries one type: make `{first}` and `{this}` agree on it");
    let var = queue_var(mention);
    let mut check = queue.clone();
    check.set_span(Span::mixed_site());
    let t = Ident::new(t, Span::mixed_site());
    let this_use = quote_spanned!(mention.span()=> _);
    quote! {{
        #[allow(non_camel_case_types)]
        #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
        trait #check<#t>: ::core::marker::Sized {
            fn port(queue: ::ezq::__private::QueueRef<#t>) -> ::ezq::__private::QueueRef<Self>;
        }
        impl<#t> #check<#t> for #t {
            fn port(queue: ::ezq::__private::QueueRef<#t>) -> ::ezq::__private::QueueRef<#t> {
                queue
            }
        }
        <#this_use as #check<_>>::port(#var)
    }}
}
