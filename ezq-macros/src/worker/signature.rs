//! Reads a worker function's signature: which parameters are queues, which
//! are extra arguments, and whether it is a loop worker or a map worker.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, PathArguments, ReturnType, Type};

use crate::errors::Errors;

/// A worker function, as `pipeline!` needs to know it.
pub struct Worker {
    pub name: syn::Ident,
    pub vis: syn::Visibility,
    pub params: Vec<Param>,
    pub shape: Shape,
    /// A map worker's message type that borrows: an error, reported beside
    /// a companion that compiles.
    pub message_borrows: Option<Span>,
}

/// The message of a map worker whose message borrows.
pub const BORROWED_MESSAGE: &str = "a map worker's message cannot borrow: a queue carries owned \
    data (or `'static` references), since messages outlive the caller's stack; take `String` \
    for `&str`, `Vec<T>` for `&[T]`";

/// The lifetime that the companion's `Args<'a>` gives every borrow of the
/// extra arguments: a scoped pipeline's scope, or `'static`.
pub const ARGS_LIFETIME: &str = "__ezq_env";

/// One parameter, in signature order.
pub struct Param {
    pub role: Role,
    /// The parameter's full type, as written.
    pub ty: Type,
}

pub enum Role {
    /// `Inbox<T>`: reads a queue of `T`.
    Input(Type),
    /// `Outbox<T>`: writes a queue of `T`.
    Output(Type),
    /// Anything else: an extra argument, given in the pipeline.
    Arg,
}

// One per worker, briefly: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Shape {
    /// Takes its inboxes and outboxes and loops by itself; returns `()` or
    /// `Result<(), E>`. `ret` is the return type's span, for errors about it.
    Loop { ret: Span },
    /// `fn(T, args..) -> U` (or `-> Result<U, E>`): called once per message
    /// of its one input; the result goes to its one output.
    Map {
        data: Type,
        output: Type,
        fallible: bool,
    },
}

/// Checks what a worker function may not be, and classifies its
/// parameters. Every problem is recorded; `None` if the signature could
/// not be read at all.
pub fn analyse(function: &ItemFn, errors: &mut Errors) -> Option<Worker> {
    let sig = &function.sig;
    if let Some(asyncness) = sig.asyncness {
        errors.at(
            asyncness.span,
            "a worker cannot be an `async fn`: each worker runs on a thread of its own; remove `async`",
        );
    }
    if let Some(unsafety) = sig.unsafety {
        errors.at(unsafety.span, "a worker cannot be an `unsafe fn`");
    }
    if let Some(abi) = &sig.abi {
        errors.at(abi.span(), "a worker cannot have an `extern` ABI");
    }
    if !sig.generics.params.is_empty() {
        errors.at(
            sig.generics.params.span(),
            "a worker cannot be generic: `pipeline!` needs the concrete type of each queue",
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.at(variadic.span(), "a worker cannot be variadic");
    }
    let mut params = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.at(
                receiver.span(),
                "a method cannot be a worker: `#[worker]` applies to free functions; move it out of the `impl` block",
            ),
            FnArg::Typed(typed) => {
                if let Type::ImplTrait(_) = *typed.ty {
                    errors.at(
                        typed.ty.span(),
                        "a worker's argument cannot be `impl Trait`: give it a concrete type",
                    );
                }
                let role = role(&typed.ty);
                let ty = (*typed.ty).clone();
                params.push(Param { role, ty });
            }
        }
    }
    let has_queues = params.iter().any(|p| !matches!(p.role, Role::Arg));
    let mut shape = match (&sig.output, has_queues) {
        (ReturnType::Default, true) => Shape::Loop {
            ret: sig.ident.span(),
        },
        (ReturnType::Type(_, ty), true) => Shape::Loop { ret: ty.span() },
        (ReturnType::Type(_, ty), false) if !params.is_empty() => {
            let (output, fallible) = match ok_type(ty) {
                Some(ok) => (ok, true),
                None => ((**ty).clone(), false),
            };
            Shape::Map {
                data: params[0].ty.clone(),
                output,
                fallible,
            }
        }
        _ => {
            errors.at(
                sig.ident.span(),
                format_args!(
                    "`{}` has no queue: a worker takes `Inbox<T>` and `Outbox<U>` parameters, \
                     or is a map worker `fn(T) -> U` called once per message",
                    sig.ident
                ),
            );
            return None;
        }
    };
    // A borrowed extra argument is for the pipeline's scope (or for
    // 'static, outside a scope). A map worker's first parameter is its
    // message, not an argument: a message cannot borrow.
    let first_arg = usize::from(matches!(shape, Shape::Map { .. }));
    let mut message_borrows = None;
    if let Shape::Map { data, .. } = &mut shape
        && let Some(span) = borrow_in(data)
    {
        // Reported once, here; the companion still compiles (the message
        // made 'static), so nothing else is reported about it.
        message_borrows = Some(span);
        *data = with_lifetime(data, "static");
        params[0].ty = data.clone();
    }
    for param in params.iter_mut().skip(first_arg) {
        if matches!(param.role, Role::Arg) && borrow_in(&param.ty).is_some() {
            param.ty = with_args_lifetime(&param.ty);
        }
    }
    Some(Worker {
        message_borrows,
        name: sig.ident.clone(),
        vis: function.vis.clone(),
        params,
        shape,
    })
}

/// Where `ty` borrows: a reference or a lifetime other than `'static`.
fn borrow_in(ty: &Type) -> Option<Span> {
    borrows(quote::ToTokens::to_token_stream(ty)).then(|| ty.span())
}

/// `ty` with every reference and lifetime other than `'static` given the
/// lifetime [`ARGS_LIFETIME`].
fn with_args_lifetime(ty: &Type) -> Type {
    with_lifetime(ty, ARGS_LIFETIME)
}

/// `ty` with every reference and lifetime other than `'static` given the
/// lifetime `'name`.
fn with_lifetime(ty: &Type, name: &str) -> Type {
    let tokens = lifetimes(quote::ToTokens::to_token_stream(ty), name);
    syn::parse2(tokens).unwrap_or_else(|_| ty.clone())
}

/// If `token` begins a function type (`fn(..) -> R`, `Fn(..) -> R` and the
/// like), the rest of it from `tokens`, up to a `,` of the same level: its
/// elided lifetimes are its own (higher-ranked), not borrows of the
/// worker's argument.
fn function_type(
    token: &proc_macro2::TokenTree,
    tokens: &mut std::iter::Peekable<proc_macro2::token_stream::IntoIter>,
) -> Option<Vec<proc_macro2::TokenTree>> {
    use proc_macro2::{Delimiter, TokenTree};
    let TokenTree::Ident(name) = token else {
        return None;
    };
    let is_fn = ["fn", "Fn", "FnMut", "FnOnce"].iter().any(|f| name == f);
    if !is_fn
        || !matches!(tokens.peek(), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis)
    {
        return None;
    }
    let mut rest = vec![tokens.next().expect("peeked")];
    if matches!(tokens.peek(), Some(TokenTree::Punct(p)) if p.as_char() == '-') {
        while let Some(t) =
            tokens.next_if(|t| !matches!(t, TokenTree::Punct(p) if p.as_char() == ','))
        {
            rest.push(t);
        }
    }
    Some(rest)
}

fn lifetimes(tokens: proc_macro2::TokenStream, lifetime: &str) -> proc_macro2::TokenStream {
    use proc_macro2::{Group, Ident, Punct, Spacing, TokenTree};
    let mut out = Vec::new();
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        if let Some(rest) = function_type(&token, &mut tokens) {
            out.push(token);
            out.extend(rest);
            continue;
        }
        match token {
            TokenTree::Punct(p) if p.as_char() == '&' => {
                let span = p.span();
                out.push(TokenTree::Punct(p));
                if !matches!(tokens.peek(), Some(TokenTree::Punct(q)) if q.as_char() == '\'') {
                    let mut tick = Punct::new('\'', Spacing::Joint);
                    tick.set_span(span);
                    out.push(TokenTree::Punct(tick));
                    out.push(TokenTree::Ident(Ident::new(lifetime, span)));
                }
            }
            TokenTree::Punct(p) if p.as_char() == '\'' => {
                out.push(TokenTree::Punct(p));
                if let Some(TokenTree::Ident(name)) = tokens.next() {
                    let name = match name == "static" {
                        true => name,
                        false => Ident::new(lifetime, name.span()),
                    };
                    out.push(TokenTree::Ident(name));
                }
            }
            TokenTree::Group(group) => {
                let mut inner = Group::new(group.delimiter(), lifetimes(group.stream(), lifetime));
                inner.set_span(group.span());
                out.push(TokenTree::Group(inner));
            }
            other => out.push(other),
        }
    }
    out.into_iter().collect()
}

/// Whether the tokens of a type hold a reference or a lifetime other than
/// `'static` (`&'static T` is fine).
fn borrows(tokens: proc_macro2::TokenStream) -> bool {
    use proc_macro2::TokenTree;
    let is_static = |t: Option<&TokenTree>| matches!(t, Some(TokenTree::Ident(i)) if i == "static");
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        if function_type(&token, &mut tokens).is_some() {
            continue;
        }
        match token {
            // A reference without a lifetime: it borrows.
            TokenTree::Punct(p)
                if p.as_char() == '&'
                    && !matches!(tokens.peek(), Some(TokenTree::Punct(q)) if q.as_char() == '\'') =>
            {
                return true;
            }
            TokenTree::Punct(p) if p.as_char() == '\'' && !is_static(tokens.peek()) => return true,
            TokenTree::Group(group) if borrows(group.stream()) => return true,
            _ => {}
        }
    }
    false
}

/// `Inbox<T>` and `Outbox<T>` (by the last path segment, as written) are
/// queues; anything else is an extra argument.
fn role(ty: &Type) -> Role {
    match generic_of(ty, "Inbox") {
        Some(t) => Role::Input(t),
        None => match generic_of(ty, "Outbox") {
            Some(t) => Role::Output(t),
            None => Role::Arg,
        },
    }
}

/// `T` if `ty` is written `...::Name<T>`.
fn generic_of(ty: &Type, name: &str) -> Option<Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) if args.args.len() == 1 => Some(t.clone()),
        _ => None,
    }
}

/// `U` if `ty` is written `Result<U, E>`.
fn ok_type(ty: &Type) -> Option<Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}
