//! Python ezq's "sum" example as a worker graph: several summers share one
//! input queue, each puts its subtotal on the output queue.

use ezq::{Inbox, Outbox, pipeline, worker};

#[worker]
fn summer(inbox: Inbox<u64>, outbox: Outbox<u64>) {
    let mut total = 0;
    for msg in inbox {
        total += msg.data;
    }
    outbox.put(total);
}

fn main() {
    let p = pipeline! {
        in_q -> summer * ezq::num_cpus() -> out_q;
    };
    // puts every number, then ends the queue
    p.in_q.feed(0..1000u64);
    // ends once every summer has returned
    let result: u64 = p.out_q.iter().map(|msg| msg.data).sum();
    p.join().expect("a worker failed or a message was lost");
    assert_eq!(result, (0..1000).sum());
    println!("{result}");
}
