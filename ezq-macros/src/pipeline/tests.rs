//! Expansion snapshots and error lists, straight from token streams: no
//! compiler run needed.

use proc_macro2::TokenStream;
use quote::quote;

use super::{graph, parse};
use crate::errors::Errors;

/// The expansion, formatted as it would appear in `cargo expand`.
fn expand(input: TokenStream) -> String {
    let expansion = super::pipeline(input);
    let file: syn::File =
        syn::parse2(quote!(fn main() { let p = #expansion; })).expect("the expansion parses");
    prettyplease::unparse(&file)
}

/// The semantic errors of a pipeline that parses.
fn errors(input: TokenStream) -> Vec<String> {
    let pipeline: parse::Pipeline = syn::parse2(input).expect("the input parses");
    let mut errors = Errors::default();
    graph::build(&pipeline, &mut errors);
    errors.messages()
}

fn syntax_error(input: TokenStream) -> String {
    match syn::parse2::<parse::Pipeline>(input) {
        Ok(_) => panic!("the input should not parse"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn sum_expansion() {
    insta::assert_snapshot!(expand(quote! {
        in_q -> summer * ezq::num_cpus() -> out_q;
    }));
}

#[test]
fn collatz_expansion() {
    insta::assert_snapshot!(expand(quote! {
        read_q -> collatz * (ezq::num_cpus() - 1).max(1) -> write_q -> printer;
    }));
}

#[test]
fn fan_in_fan_out_expansion() {
    insta::assert_snapshot!(expand(quote! {
        () -> numbers(1000) -> raw[64, batch 16];
        raw2[batch 8] -> split -> (small2, large2);
        raw -> split -> (small, large[unbounded]);
        (small, large) -> merge * 2 -> merged;
        extra -> stages::scale(2.5, "x") -> merged;
    }));
}

#[test]
fn redis_expansion() {
    insta::assert_snapshot!(expand(quote! {
        cluster = ezq::cluster::Cluster::from_env("collatz").unwrap();
        read_q[redis] -> collatz * 4 -> write_q[redis, 4096, batch 512] -> printer;
    }));
}

#[test]
fn routed_expansion() {
    insta::assert_snapshot!(expand(quote! {
        () -> tokenize -> words[by word_of, batch 256];
        words -> merge * 4 -> totals;
        config[broadcast] -> serve * n -> replies;
        events[4096, by |e: &Event| e.user] -> sessions * 2 -> done;
    }));
}

#[test]
fn routes_are_checked() {
    assert_eq!(
        errors(quote! {
            a -> w -> b[by key];
            c[broadcast] -> v -> d;
            c -> u -> e;
            f[redis, by key] -> w -> g;
        }),
        [
            "queue `b` is routed (`by`) but no worker reads it: a route chooses among the replicas of the queue's reader worker, and a sink is read by the pipeline's caller; remove `by`",
            "queue `c` is routed (`broadcast`), so one worker must read it, but 2 workers read it (`v` and `u`): let one worker read it, with replicas (`v * 4`), or give each worker a queue of its own",
            "another worker (`u`) reads the routed queue `c` here; `v` reads it first, and a routed queue has one reader worker",
            "routing a Redis-backed queue is not supported yet: `by` needs queue `f` to be local; remove `redis` or `by`",
        ]
    );
    assert!(
        errors(quote! {
            a[by k, batch 64, 128] -> w * 4 -> b;
            b[broadcast] -> v * 2;
        })
        .is_empty()
    );
}

#[test]
fn route_syntax_errors_say_what_was_expected() {
    assert_eq!(
        syntax_error(quote! { a[by] -> w; }),
        "expected a key function after `by`, such as `q[by word]`"
    );
    assert_eq!(
        syntax_error(quote! { a[by k, broadcast] -> w; }),
        "a route (`by KEY` or `broadcast`) is given twice for this queue"
    );
}

#[test]
fn a_cluster_needs_its_keyword() {
    assert_eq!(
        syntax_error(quote! { clutser = c; a -> w -> b; }),
        "expected `cluster = EXPR;`, `scope = EXPR;` or a chain of queues and workers"
    );
    assert_eq!(
        syntax_error(quote! { scope = s; scope = t; a -> w -> b; }),
        "`scope` is given twice"
    );
}

#[test]
fn scoped_expansion() {
    insta::assert_snapshot!(expand(quote! {
        scope = s;
        names -> lookup(&table) * 2 -> ids;
    }));
}

#[test]
fn stack_size_expansion() {
    insta::assert_snapshot!(expand(quote! {
        bigs -> deep(3)[stack 64 << 20] * 2 -> out;
    }));
}

#[test]
fn a_closure_is_not_a_worker() {
    for input in [
        quote! { a -> |x: u64| x * 2 -> b; },
        quote! { a -> move |x: u64| x -> b; },
        quote! { () -> || 1 -> b; },
    ] {
        assert_eq!(
            syntax_error(input),
            "a closure cannot be a worker: declare a function with `#[ezq::worker]` and name it here"
        );
    }
}

#[test]
fn worker_options_are_checked() {
    assert_eq!(
        syntax_error(quote! { a -> w[heap 10] -> b; }),
        "expected a worker option: `stack BYTES`, such as `worker[stack 16 << 20]`"
    );
    assert_eq!(
        syntax_error(quote! { a -> w[stack] -> b; }),
        "expected a stack size in bytes after `stack`, such as `[stack 16 << 20]`"
    );
}

#[test]
fn semantic_errors_are_all_reported() {
    let messages = errors(quote! {
        a -> w * 0 -> b;
        (b, b) -> v -> c[2];
        c -> w -> d;
        d -> w -> c;
        e[0] -> w -> f;
    });
    assert_eq!(
        messages,
        [
            "worker `w` needs at least 1 replica: with 0, nothing would read its input",
            "queue `b` is listed twice in this slot: each queue parameter of a worker needs a queue of its own",
            "a queue's capacity must be at least 1: the END has to fit; use `[1]` for the tightest hand-off",
            "pipeline has a cycle: `c -> w -> d -> w -> c`; END could never reach these queues, since each waits for the others to end",
        ]
    );
}

#[test]
fn a_sink_cannot_be_bounded() {
    assert_eq!(
        errors(quote! { a -> w -> b[8]; }),
        [
            "queue `b` is a sink (no worker reads it), and sinks are unbounded so that the pipeline never waits for its caller; remove the capacity"
        ]
    );
}

#[test]
fn a_self_loop_is_a_cycle() {
    assert_eq!(
        errors(quote! { (a, b) -> w -> b; }),
        [
            "pipeline has a cycle: `b -> w -> b`; END could never reach these queues, since each waits for the others to end"
        ]
    );
}

#[test]
fn valid_graphs_have_no_errors() {
    assert!(
        errors(quote! {
            a -> w -> b -> v * n.max(1) -> c;
            b -> u -> d;
            (c, d) -> join_them -> e;
            () -> gen -> a;
        })
        .is_empty()
    );
}

#[test]
fn syntax_errors_say_what_was_expected() {
    assert_eq!(syntax_error(quote! { a w -> b; }), "expected `;` or `->`");
    assert_eq!(
        syntax_error(quote! { a -> w -> ; }),
        "expected a queue: `name`, `(a, b)`, or `()` for none"
    );
    assert_eq!(
        syntax_error(quote! { a -> ; }),
        "expected a worker: the name of a `#[worker]` function"
    );
    assert_eq!(
        syntax_error(quote! { a -> w * -> b; }),
        "expected a replica count after `*`, such as `worker * 4`"
    );
    assert_eq!(
        syntax_error(quote! { a; }),
        "a chain needs a worker: `queue -> worker -> queue;`"
    );
    let option = "expected a queue option: a capacity (`q[1024]`), `unbounded`, `batch N` (`q[batch 256]`), `by KEY` (`q[by word]`), `broadcast`, or `redis`";
    assert_eq!(syntax_error(quote! { a[] -> w; }), option);
    assert_eq!(syntax_error(quote! { a[, 4] -> w; }), option);
    assert_eq!(
        syntax_error(quote! { a[4, 8] -> w; }),
        "a capacity is given twice for this queue"
    );
    assert_eq!(
        syntax_error(quote! { a[batch 4, batch 8] -> w; }),
        "`batch` is given twice for this queue"
    );
}

#[test]
fn an_empty_pipeline_is_an_error() {
    assert_eq!(
        errors(quote! {}),
        ["empty pipeline: declare at least one chain, such as `in_q -> worker -> out_q;`"]
    );
}
