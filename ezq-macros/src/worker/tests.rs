//! Expansion snapshots and errors of `#[worker]`, from token streams.

use proc_macro2::TokenStream;
use quote::quote;

fn expand(item: TokenStream) -> String {
    let expansion = super::worker(TokenStream::new(), item);
    prettyplease::unparse(&syn::parse2(expansion).expect("the expansion parses"))
}

fn error_messages(args: TokenStream, item: TokenStream) -> Vec<String> {
    let output = super::worker(args, item).to_string();
    output
        .split("compile_error ! {")
        .skip(1)
        .map(|rest| {
            let start = rest.find('"').expect("a message") + 1;
            let end = start + rest[start..].find("\" }").expect("the message's end");
            rest[start..end].replace("\\\"", "\"")
        })
        .collect()
}

#[test]
fn loop_worker_expansion() {
    insta::assert_snapshot!(expand(quote! {
        pub fn scale(inbox: Inbox<f64>, factor: f64, outbox: Outbox<f64>) -> Result<(), String> {
            for msg in inbox { outbox.put(msg.data * factor); }
            Ok(())
        }
    }));
}

#[test]
fn map_worker_expansion() {
    insta::assert_snapshot!(expand(quote! {
        fn add(x: u64, offset: u64) -> u64 { x + offset }
    }));
}

#[test]
fn fallible_map_worker_expansion() {
    insta::assert_snapshot!(expand(quote! {
        fn parse(text: String) -> Result<u64, std::num::ParseIntError> { text.parse() }
    }));
}

#[test]
fn every_problem_of_a_signature_is_reported() {
    let messages = error_messages(
        quote!(name = "x"),
        quote! {
            async unsafe fn bad<T>(&self, x: impl Clone, out: Outbox<T>) {}
        },
    );
    assert_eq!(
        messages,
        [
            "`#[worker]` takes no arguments: the worker's name, queues and arguments all come from its signature",
            "a worker cannot be an `async fn`: each worker runs on a thread of its own; remove `async`",
            "a worker cannot be an `unsafe fn`",
            "a worker cannot be generic: `pipeline!` needs the concrete type of each queue",
            "a method cannot be a worker: `#[worker]` applies to free functions; move it out of the `impl` block",
            "a worker's argument cannot be `impl Trait`: give it a concrete type",
        ]
    );
}

#[test]
fn a_failed_worker_keeps_its_function() {
    let output = super::worker(
        TokenStream::new(),
        quote!(
            async fn f(i: Inbox<u8>) {}
        ),
    )
    .to_string();
    assert!(output.contains("async fn f"), "{output}");
    assert!(!output.contains("WorkerFn"), "{output}");
}

#[test]
fn a_borrowed_argument_is_for_the_pipelines_scope() {
    for (input, borrows) in [
        (
            quote! { fn w(i: Inbox<u64>, table: &HashMap<String, u32>) {} },
            true,
        ),
        (quote! { fn w(i: Inbox<u64>, names: Vec<&str>) {} }, true),
        (
            quote! { fn w(i: Inbox<u64>, pair: (u64, &'a str)) {} },
            true,
        ),
        (quote! { fn w(i: Inbox<u64>, name: &'static str) {} }, false),
        (
            quote! { fn w(i: Inbox<u64>, names: Vec<&'static str>) {} },
            false,
        ),
        (
            quote! { fn w(i: Inbox<u64>, table: Arc<HashMap<String, u32>>) {} },
            false,
        ),
        // A function type's elided lifetimes are its own.
        (
            quote! { fn w(i: Inbox<u64>, f: fn(&str) -> usize) {} },
            false,
        ),
        (
            quote! { fn w(i: Inbox<u64>, f: Arc<dyn Fn(&str) -> &str + Send + Sync>) {} },
            false,
        ),
        (
            quote! { fn w(i: Inbox<u64>, pair: (fn(&str) -> &str, &u64)) {} },
            true,
        ),
    ] {
        let function: syn::ItemFn = syn::parse2(input.clone()).expect("a function");
        let mut errors = crate::errors::Errors::default();
        let worker = super::signature::analyse(&function, &mut errors).expect("a worker");
        assert!(errors.is_empty(), "{input}");
        // Every borrow in the companion's argument types is for the
        // pipeline's scope, or 'static.
        let args: Vec<String> = worker
            .params
            .iter()
            .skip(1)
            .map(|p| quote::ToTokens::to_token_stream(&p.ty).to_string())
            .collect();
        let scoped = args.iter().any(|ty| ty.contains("'__ezq_env"));
        assert_eq!(scoped, borrows, "{input}");
        for ty in args
            .iter()
            .filter(|ty| !ty.contains("fn") && !ty.contains("Fn"))
        {
            let bare = ty.matches("& ").count();
            let given = ty.matches("& '__ezq_env").count() + ty.matches("& 'static").count();
            assert_eq!(bare, given, "{ty}");
            assert!(!ty.contains("'a"), "{ty}");
        }
    }
}

#[test]
fn a_map_workers_message_keeps_its_own_type() {
    let function: syn::ItemFn =
        syn::parse2(quote! { fn len(text: &'static str, scale: &u64) -> u64 { 0 } })
            .expect("a function");
    let mut errors = crate::errors::Errors::default();
    let worker = super::signature::analyse(&function, &mut errors).expect("a worker");
    let types: Vec<String> = (worker.params.iter())
        .map(|p| quote::ToTokens::to_token_stream(&p.ty).to_string())
        .collect();
    assert_eq!(types, ["& 'static str", "& '__ezq_env u64"]);
}
