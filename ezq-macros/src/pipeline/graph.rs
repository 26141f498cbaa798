//! From the syntax tree to a checked graph: queues by name, workers with
//! the queues they read and write. Every semantic mistake is recorded, each
//! on the user's token, so one build reports all of them.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use proc_macro2::{Ident, Span};
use syn::{Expr, Lit};

use super::parse::{CapacitySpec, CapacityValue, Pipeline, RouteSpec, Slot, WorkerRef};
use crate::errors::Errors;

/// The checked graph that expansion works from.
pub struct Graph<'a> {
    pub queues: Vec<Queue<'a>>,
    pub workers: Vec<Worker<'a>>,
}

pub struct Queue<'a> {
    /// The first mention of the queue.
    pub name: &'a Ident,
    pub capacity: Option<&'a CapacitySpec>,
    pub producers: Vec<usize>,
    pub consumers: Vec<usize>,
    /// The queue's route, once checked: `None` for a queue that has none,
    /// and for one whose route is in error (its expansion then routes
    /// nothing, so that the error comes alone).
    pub route: Option<&'a RouteSpec>,
}

impl Queue<'_> {
    /// No worker produces it: the caller feeds it through the handle.
    pub fn is_source(&self) -> bool {
        self.producers.is_empty()
    }

    /// No worker consumes it: the caller reads it through the handle.
    pub fn is_sink(&self) -> bool {
        self.consumers.is_empty()
    }
}

pub struct Worker<'a> {
    pub syntax: &'a WorkerRef,
    pub inputs: Port<'a>,
    pub outputs: Port<'a>,
}

/// The queues one side of a worker is wired to, with where they are named.
#[derive(Clone)]
pub struct Port<'a> {
    /// The slot's span, or the worker's if the chain gave no slot.
    pub span: Span,
    pub queues: Vec<(usize, &'a Ident)>,
}

/// Builds and checks the graph. The graph comes back even when errors were
/// found, so that expansion can still emit well-typed code beside them.
pub fn build<'a>(pipeline: &'a Pipeline, errors: &mut Errors) -> Graph<'a> {
    let mut graph = Graph {
        queues: Vec::new(),
        workers: Vec::new(),
    };
    let mut by_name: HashMap<String, usize> = HashMap::new();
    if pipeline.chains.is_empty() {
        errors.at(
            Span::call_site(),
            "empty pipeline: declare at least one chain, such as `in_q -> worker -> out_q;`",
        );
    }
    for chain in &pipeline.chains {
        // Each slot is resolved once, though a middle slot is both the
        // output of one worker and the input of the next.
        let ports: Vec<Port> = (chain.slots.iter())
            .map(|slot| graph.port(slot, &mut by_name, errors))
            .collect();
        for (i, syntax) in chain.workers.iter().enumerate() {
            let index = graph.workers.len();
            let inputs = ports[i].clone();
            let outputs = ports.get(i + 1).cloned().unwrap_or_else(|| Port {
                span: syntax.span(),
                queues: Vec::new(),
            });
            for &(q, _) in &inputs.queues {
                graph.queues[q].consumers.push(index);
            }
            for &(q, _) in &outputs.queues {
                graph.queues[q].producers.push(index);
            }
            check_replicas(syntax, errors);
            graph.workers.push(Worker {
                syntax,
                inputs,
                outputs,
            });
        }
    }
    for queue in &graph.queues {
        // A Redis-backed sink is bounded on the server like any of its queues.
        let bounded = queue
            .capacity
            .filter(|c| c.value.is_some() && c.redis.is_none());
        if let (true, Some(capacity)) = (queue.is_sink(), bounded) {
            errors.at(
                capacity.span,
                format_args!(
                    "queue `{}` is a sink (no worker reads it), and sinks are unbounded so that the \
                     pipeline never waits for its caller; remove the capacity",
                    queue.name
                ),
            );
        }
    }
    check_routes(&mut graph, errors);
    check_cycles(&graph, errors);
    graph
}

/// A routed queue chooses among the replicas of its one reader worker:
/// it must have exactly one, and be local.
fn check_routes(graph: &mut Graph, errors: &mut Errors) {
    for q in 0..graph.queues.len() {
        let queue = &graph.queues[q];
        let Some(spec) = queue.capacity else {
            continue;
        };
        let Some(route) = &spec.route else {
            continue;
        };
        let (name, keyword) = (queue.name, route.keyword());
        let mut valid = true;
        if spec.redis.is_some() {
            errors.at(
                keyword.span(),
                format_args!(
                    "routing a Redis-backed queue is not supported yet: `{keyword}` needs queue `{name}` to be local; remove `redis` or `{keyword}`"
                ),
            );
            valid = false;
        }
        let reader_names: Vec<String> = (queue.consumers.iter())
            .map(|&w| graph.workers[w].syntax.name())
            .collect();
        match reader_names.as_slice() {
            [] => {
                errors.at(
                    keyword.span(),
                    format_args!(
                        "queue `{name}` is routed (`{keyword}`) but no worker reads it: a route chooses among the replicas of the queue's reader worker, and a sink is read by the pipeline's caller; remove `{keyword}`"
                    ),
                );
                valid = false;
            }
            [_] => {}
            [first, ..] => {
                let list: Vec<String> = reader_names.iter().map(|n| format!("`{n}`")).collect();
                errors.at(
                    keyword.span(),
                    format_args!(
                        "queue `{name}` is routed (`{keyword}`), so one worker must read it, but {} workers read it ({}): let one worker read it, with replicas (`{first} * 4`), or give each worker a queue of its own",
                        list.len(),
                        list.join(" and ")
                    ),
                );
                for &w in &queue.consumers[1..] {
                    let mention = (graph.workers[w].inputs.queues.iter())
                        .find(|&&(wq, _)| wq == q)
                        .map(|&(_, mention)| mention);
                    if let Some(mention) = mention {
                        errors.at(
                            mention.span(),
                            format_args!(
                                "another worker (`{}`) reads the routed queue `{name}` here; `{first}` reads it first, and a routed queue has one reader worker",
                                graph.workers[w].syntax.name()
                            ),
                        );
                    }
                }
                valid = false;
            }
        }
        if valid {
            graph.queues[q].route = Some(route);
        }
    }
}

impl<'a> Graph<'a> {
    /// Resolves a slot's queue names, declaring queues at first mention.
    fn port(
        &mut self,
        slot: &'a Slot,
        by_name: &mut HashMap<String, usize>,
        errors: &mut Errors,
    ) -> Port<'a> {
        let mut queues: Vec<(usize, &Ident)> = Vec::new();
        for mention in &slot.queues {
            let name = mention.name.to_string();
            let index = *by_name.entry(name).or_insert_with(|| {
                self.queues.push(Queue {
                    name: &mention.name,
                    capacity: None,
                    producers: Vec::new(),
                    consumers: Vec::new(),
                    route: None,
                });
                self.queues.len() - 1
            });
            if queues.iter().any(|&(q, _)| q == index) {
                errors.at(
                    mention.name.span(),
                    format_args!(
                        "queue `{}` is listed twice in this slot: each queue parameter of a worker needs a queue of its own",
                        mention.name
                    ),
                );
            }
            queues.push((index, &mention.name));
            if let Some(capacity) = &mention.capacity {
                self.set_capacity(index, capacity, errors);
            }
        }
        Port {
            span: slot.span,
            queues,
        }
    }

    fn set_capacity(&mut self, index: usize, capacity: &'a CapacitySpec, errors: &mut Errors) {
        if let Some(CapacityValue::Bounded(expr)) = &capacity.value {
            if int_literal(expr) == Some(0) {
                errors.at(
                    capacity.span,
                    "a queue's capacity must be at least 1: the END has to fit; use `[1]` for the tightest hand-off",
                );
            }
        }
        if let Some(batch) = &capacity.batch {
            if int_literal(batch) == Some(0) {
                errors.at(
                    syn::spanned::Spanned::span(batch),
                    "a batch holds at least 1 message; `batch 1` is the same as no batching",
                );
            }
        }
        let queue = &mut self.queues[index];
        match queue.capacity {
            None => queue.capacity = Some(capacity),
            Some(first) => {
                let name = queue.name;
                errors.at(
                    capacity.span,
                    format_args!(
                        "the options of queue `{name}` are set twice; set them at one mention only"
                    ),
                );
                errors.at(
                    first.span,
                    format_args!("the options of queue `{name}` are first set here"),
                );
            }
        }
    }
}

fn check_replicas(worker: &WorkerRef, errors: &mut Errors) {
    if let Some(replicas) = &worker.replicas {
        if int_literal(&replicas.expr) == Some(0) {
            errors.at(
                syn::spanned::Spanned::span(&replicas.expr),
                format_args!(
                    "worker `{}` needs at least 1 replica: with 0, nothing would read its input",
                    worker.name()
                ),
            );
        }
    }
}

fn int_literal(expr: &Expr) -> Option<u128> {
    match expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Int(int) => int.base10_parse().ok(),
            _ => None,
        },
        Expr::Paren(paren) => int_literal(&paren.expr),
        _ => None,
    }
}

/// A cycle of workers and queues can never end: each queue in it waits for
/// its producers, which wait for their inputs, which are in the cycle.
/// Reports one error per strongly connected group of workers.
fn check_cycles(graph: &Graph, errors: &mut Errors) {
    let n = graph.workers.len();
    // feeds[a] lists (b, queue, where the queue is named as b's input).
    let feeds: Vec<Vec<(usize, usize, &Ident)>> = (graph.workers.iter())
        .map(|w| {
            let mut next = Vec::new();
            for &(q, _) in &w.outputs.queues {
                for &b in &graph.queues[q].consumers {
                    let mention = graph.workers[b]
                        .inputs
                        .queues
                        .iter()
                        .find(|&&(bq, _)| bq == q);
                    if let Some(&(_, name)) = mention {
                        next.push((b, q, name));
                    }
                }
            }
            next
        })
        .collect();
    let mut reach = vec![vec![false; n]; n];
    for (a, next) in feeds.iter().enumerate() {
        for &(b, _, _) in next {
            reach[a][b] = true;
        }
    }
    for k in 0..n {
        let via = reach[k].clone();
        for row in &mut reach {
            if row[k] {
                for (to, &through) in row.iter_mut().zip(&via) {
                    *to |= through;
                }
            }
        }
    }
    let mut reported = vec![false; n];
    for start in 0..n {
        if !reach[start][start] || reported[start] {
            continue;
        }
        for (other, done) in reported.iter_mut().enumerate() {
            if reach[start][other] && reach[other][start] {
                *done = true;
            }
        }
        let (mut path, closing) = shortest_cycle(start, &feeds);
        // Read the cycle from the queue where it is reported.
        path.rotate_right(1);
        let mut text = String::new();
        for &(w, q) in &path {
            let _ = write!(
                text,
                "{} -> {} -> ",
                graph.queues[q].name,
                graph.workers[w].syntax.name()
            );
        }
        let _ = write!(text, "{}", graph.queues[path[0].1].name);
        errors.at(
            closing.span(),
            format_args!(
                "pipeline has a cycle: `{text}`; END could never reach these queues, since each waits for the others to end"
            ),
        );
    }
}

/// The shortest cycle through `start`, as (worker, the queue feeding it)
/// pairs from `start`, and the mention of the queue that closes it.
fn shortest_cycle<'a>(
    start: usize,
    feeds: &[Vec<(usize, usize, &'a Ident)>],
) -> (Vec<(usize, usize)>, &'a Ident) {
    let mut came_from: Vec<Option<(usize, usize, &Ident)>> = vec![None; feeds.len()];
    let mut queue = VecDeque::from([start]);
    while let Some(a) = queue.pop_front() {
        for &(b, q, name) in &feeds[a] {
            if came_from[b].is_none() {
                came_from[b] = Some((a, q, name));
                if b == start {
                    queue.clear();
                    break;
                }
                queue.push_back(b);
            }
        }
    }
    let mut path = Vec::new();
    let mut at = start;
    let closing = came_from[start].map(|(_, _, name)| name);
    while let Some((prev, q, _)) = came_from[at] {
        path.push((at, q));
        at = prev;
        if at == start {
            break;
        }
    }
    path.reverse();
    (path, closing.expect("start lies on a cycle"))
}
