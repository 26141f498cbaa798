use ezq::{Graph, Inbox, Outbox};

fn forwarding<'env>() -> (Graph<'env>, ezq::graph::QueueRef<u64>, ezq::graph::QueueRef<u64>) {
    let mut g = Graph::new();
    let (a, b) = (g.queue::<u64>("a"), g.queue::<u64>("b"));
    g.add("fwd", 1, (a,), (b,), |(i,): (Inbox<u64>,), (o,): (Outbox<u64>,)| {
        for msg in i {
            o.put_msg(msg);
        }
    });
    (g, a, b)
}

fn main() {
    // Swapping the pipeline out of its ScopedPipeline would let it leave
    // the scope, which would then wait for workers that wait for its END.
    let escaped = std::thread::scope(|s| {
        let (g, a, b) = forwarding();
        let scoped = g.start_in(s, |c| (c.source(a), c.sink(b)));
        let (g, a, b) = forwarding();
        let stand_in = g.start(|c| (c.source(a), c.sink(b)));
        std::mem::replace(&mut *scoped, stand_in)
    });
    escaped.0.put(1);
}
