//! The syntax of `pipeline!`: statements of queue slots and workers joined
//! by `->`. Syntax errors stop at the first, with "expected ..." messages.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Token, bracketed, parenthesized, token};

/// The whole macro input: optionally `cluster = EXPR;` and `scope = EXPR;`,
/// then one or more chains.
pub struct Pipeline {
    /// Where the Redis-backed queues live and what runs here.
    pub cluster: Option<Expr>,
    /// The `std::thread::Scope` whose threads run the workers.
    pub scope: Option<Expr>,
    pub chains: Vec<Chain>,
}

/// `slot -> worker -> slot -> worker ... ;`: `slots[i]` feeds `workers[i]`
/// and `slots[i + 1]`, if any, is what it produces.
pub struct Chain {
    pub slots: Vec<Slot>,
    pub workers: Vec<WorkerRef>,
}

/// A queue slot: `name`, `(a, b)` or `()`.
pub struct Slot {
    pub span: Span,
    pub queues: Vec<QueueMention>,
}

/// One mention of a queue by name, with its capacity if given here.
pub struct QueueMention {
    pub name: Ident,
    pub capacity: Option<CapacitySpec>,
}

/// `name[EXPR]`, `name[unbounded]`, `name[batch EXPR]`, `name[by KEY]`,
/// `name[broadcast]`, `name[redis]`, or several of them separated by
/// commas.
pub struct CapacitySpec {
    pub span: Span,
    pub value: Option<CapacityValue>,
    pub batch: Option<Expr>,
    /// The `redis` keyword, if given.
    pub redis: Option<Ident>,
    /// How the queue's messages are routed between its reader's replicas.
    pub route: Option<RouteSpec>,
}

/// `by KEY` or `broadcast`.
pub enum RouteSpec {
    /// Each message to the replica that its key picks.
    Keyed { by: Ident, key: Expr },
    /// Every message to every replica.
    Broadcast(Ident),
}

impl RouteSpec {
    /// The keyword, where errors about the route are reported.
    pub fn keyword(&self) -> &Ident {
        match self {
            RouteSpec::Keyed { by, .. } => by,
            RouteSpec::Broadcast(keyword) => keyword,
        }
    }
}

pub enum CapacityValue {
    Bounded(Expr),
    Unbounded,
}

/// A worker in a chain: `path`, `path(args..)`, optionally `[stack BYTES]`,
/// optionally `* replicas`.
pub struct WorkerRef {
    pub path: syn::Path,
    pub args: Option<Args>,
    /// The stack size of its threads, from `[stack BYTES]`.
    pub stack: Option<Expr>,
    pub replicas: Option<Replicas>,
}

/// `(a, b, ..)` after a worker's name.
pub struct Args {
    pub span: Span,
    pub exprs: Punctuated<Expr, Token![,]>,
}

/// `* EXPR`.
pub struct Replicas {
    pub expr: Expr,
}

impl Parse for Pipeline {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let (mut cluster, mut scope) = (None, None);
        while input.peek(Ident) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
            let keyword: Ident = input.parse()?;
            let slot = match keyword.to_string().as_str() {
                "cluster" => &mut cluster,
                "scope" => &mut scope,
                _ => {
                    return Err(syn::Error::new(
                        keyword.span(),
                        "expected `cluster = EXPR;`, `scope = EXPR;` or a chain of queues and workers",
                    ));
                }
            };
            if slot.is_some() {
                return Err(syn::Error::new(
                    keyword.span(),
                    format!("`{keyword}` is given twice"),
                ));
            }
            input.parse::<Token![=]>()?;
            *slot = Some(input.parse()?);
            input.parse::<Token![;]>()?;
        }
        let mut chains = Vec::new();
        while !input.is_empty() {
            chains.push(input.parse()?);
        }
        Ok(Pipeline {
            cluster,
            scope,
            chains,
        })
    }
}

impl Parse for Chain {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut chain = Chain {
            slots: vec![input.parse()?],
            workers: Vec::new(),
        };
        loop {
            if end_of_chain(input)? {
                if chain.workers.is_empty() {
                    let span = chain.slots[0].span;
                    return Err(syn::Error::new(
                        span,
                        "a chain needs a worker: `queue -> worker -> queue;`",
                    ));
                }
                return Ok(chain);
            }
            chain.workers.push(input.parse()?);
            if end_of_chain(input)? {
                return Ok(chain);
            }
            chain.slots.push(input.parse()?);
        }
    }
}

/// Consumes `;` (or sees the end of input) and returns true, or consumes
/// `->` and returns false.
fn end_of_chain(input: ParseStream) -> syn::Result<bool> {
    if input.is_empty() {
        return Ok(true);
    }
    let lookahead = input.lookahead1();
    if lookahead.peek(Token![;]) {
        input.parse::<Token![;]>()?;
        Ok(true)
    } else if lookahead.peek(Token![->]) {
        input.parse::<Token![->]>()?;
        Ok(false)
    } else {
        Err(lookahead.error())
    }
}

impl Parse for Slot {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if input.peek(token::Paren) {
            let content;
            let paren = parenthesized!(content in input);
            let queues = Punctuated::<QueueMention, Token![,]>::parse_terminated(&content)?;
            Ok(Slot {
                span: paren.span.join(),
                queues: queues.into_iter().collect(),
            })
        } else if input.peek(Ident) {
            let queue: QueueMention = input.parse()?;
            Ok(Slot {
                span: queue.name.span(),
                queues: vec![queue],
            })
        } else {
            Err(input.error("expected a queue: `name`, `(a, b)`, or `()` for none"))
        }
    }
}

impl Parse for QueueMention {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name: Ident = input.parse()?;
        let capacity = if input.peek(token::Bracket) {
            let content;
            let bracket = bracketed!(content in input);
            let span = bracket.span.join();
            let mut spec = CapacitySpec {
                span,
                value: None,
                batch: None,
                redis: None,
                route: None,
            };
            if content.is_empty() {
                return Err(syn::Error::new(span, EXPECTED_OPTION));
            }
            while !content.is_empty() {
                parse_queue_option(&content, &mut spec)?;
                if !content.is_empty() {
                    content.parse::<Token![,]>()?;
                }
            }
            Some(spec)
        } else {
            None
        };
        Ok(QueueMention { name, capacity })
    }
}

const EXPECTED_OPTION: &str = "expected a queue option: a capacity (`q[1024]`), `unbounded`, `batch N` (`q[batch 256]`), `by KEY` (`q[by word]`), `broadcast`, or `redis`";

/// What a second route of one queue is called.
const A_ROUTE: &str = "a route (`by KEY` or `broadcast`)";

/// One option inside `name[...]`.
fn parse_queue_option(content: ParseStream, spec: &mut CapacitySpec) -> syn::Result<()> {
    let fork = content.fork();
    let keyword = fork.parse::<Ident>().ok();
    let at_end = fork.is_empty() || fork.peek(Token![,]);
    match keyword {
        Some(k) if k == "unbounded" && at_end => {
            let k: Ident = content.parse()?;
            set_once(
                &mut spec.value,
                CapacityValue::Unbounded,
                k.span(),
                "a capacity",
            )
        }
        Some(k) if k == "redis" && at_end => {
            let k: Ident = content.parse()?;
            let span = k.span();
            set_once(&mut spec.redis, k, span, "`redis`")
        }
        Some(k) if k == "broadcast" && at_end => {
            let k: Ident = content.parse()?;
            let span = k.span();
            set_once(&mut spec.route, RouteSpec::Broadcast(k), span, A_ROUTE)
        }
        Some(k) if k == "by" && at_end => Err(syn::Error::new(
            k.span(),
            "expected a key function after `by`, such as `q[by word]`",
        )),
        Some(k) if k == "by" => {
            let by: Ident = content.parse()?;
            let key: Expr = content.parse()?;
            let span = by.span();
            set_once(&mut spec.route, RouteSpec::Keyed { by, key }, span, A_ROUTE)
        }
        Some(k) if k == "batch" && !at_end => {
            let k: Ident = content.parse()?;
            let expr: Expr = content.parse()?;
            set_once(&mut spec.batch, expr, k.span(), "`batch`")
        }
        _ if content.peek(Token![,]) => Err(content.error(EXPECTED_OPTION)),
        _ => {
            let expr: Expr = content.parse()?;
            let span = syn::spanned::Spanned::span(&expr);
            set_once(
                &mut spec.value,
                CapacityValue::Bounded(expr),
                span,
                "a capacity",
            )
        }
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, span: Span, what: &str) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(
            span,
            format!("{what} is given twice for this queue"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

impl Parse for WorkerRef {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if input.peek(Token![|]) || input.peek(Token![||]) || input.peek(Token![move]) {
            return Err(input.error(
                "a closure cannot be a worker: declare a function with `#[ezq::worker]` and name it here",
            ));
        }
        if !input.peek(Ident) && !input.peek(Token![::]) {
            return Err(input.error("expected a worker: the name of a `#[worker]` function"));
        }
        let path = syn::Path::parse_mod_style(input)?;
        let args = if input.peek(token::Paren) {
            let content;
            let paren = parenthesized!(content in input);
            Some(Args {
                span: paren.span.join(),
                exprs: Punctuated::parse_terminated(&content)?,
            })
        } else {
            None
        };
        let stack = if input.peek(token::Bracket) {
            Some(parse_worker_options(input)?)
        } else {
            None
        };
        let replicas = if input.peek(Token![*]) {
            let star: Token![*] = input.parse()?;
            let tokens = tokens_before_arrow(input)?;
            if tokens.is_empty() {
                return Err(syn::Error::new(
                    star.span,
                    "expected a replica count after `*`, such as `worker * 4`",
                ));
            }
            Some(Replicas {
                expr: syn::parse2(tokens)?,
            })
        } else {
            None
        };
        Ok(WorkerRef {
            path,
            args,
            stack,
            replicas,
        })
    }
}

const EXPECTED_WORKER_OPTION: &str =
    "expected a worker option: `stack BYTES`, such as `worker[stack 16 << 20]`";

/// `[stack BYTES]` after a worker: its only option so far.
fn parse_worker_options(input: ParseStream) -> syn::Result<Expr> {
    let content;
    let bracket = bracketed!(content in input);
    let keyword = content.fork().parse::<Ident>().ok();
    match keyword {
        Some(k) if k == "stack" => {
            content.parse::<Ident>()?;
            if content.is_empty() {
                return Err(syn::Error::new(
                    k.span(),
                    "expected a stack size in bytes after `stack`, such as `[stack 16 << 20]`",
                ));
            }
            content.parse()
        }
        _ => Err(syn::Error::new(bracket.span.join(), EXPECTED_WORKER_OPTION)),
    }
}

/// The tokens up to the next top-level `->` or `;`: syn's expression parser
/// would read the `-` of `->` as a minus.
fn tokens_before_arrow(input: ParseStream) -> syn::Result<TokenStream> {
    input.step(|cursor| {
        let mut rest = *cursor;
        let mut tokens = TokenStream::new();
        while let Some((tt, next)) = rest.token_tree() {
            if let TokenTree::Punct(p) = &tt {
                if p.as_char() == ';' {
                    break;
                }
                if p.as_char() == '-'
                    && matches!(next.punct(), Some((gt, _)) if gt.as_char() == '>')
                {
                    break;
                }
            }
            tokens.extend([tt]);
            rest = next;
        }
        Ok((tokens, rest))
    })
}

impl WorkerRef {
    /// The worker's name as written, for messages.
    pub fn name(&self) -> String {
        let segments: Vec<_> = self
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        segments.join("::")
    }

    /// The span of the worker's name.
    pub fn span(&self) -> Span {
        self.path.span()
    }
}
