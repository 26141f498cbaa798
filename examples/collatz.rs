//! Python ezq's "read and write queues" example as a worker graph: collatz
//! workers compute one step for each number, one printer prints the results
//! in order.

use ezq::{Inbox, Msg, Outbox, pipeline, worker};

#[worker]
fn collatz(read_q: Inbox<u64>, write_q: Outbox<(u64, u64)>) {
    for msg in read_q {
        let n = msg.data;
        if msg.kind == "EVEN" {
            write_q.put_msg(Msg::new((n, n / 2)).order(msg.order));
        } else if msg.kind == "ODD" {
            write_q.put_msg(Msg::new((n, 3 * n + 1)).order(msg.order));
        }
    }
}

#[worker]
fn printer(write_q: Inbox<(u64, u64)>) {
    for msg in ezq::sortiter(write_q) {
        println!("{:?}", msg.data);
    }
}

fn main() {
    let p = pipeline! {
        read_q -> collatz * (ezq::num_cpus() - 1).max(1) -> write_q -> printer;
    };
    for i in 0..40u64 {
        let kind = if i % 2 == 0 { "EVEN" } else { "ODD" };
        p.read_q.put_msg(Msg::new(i).kind(kind).order(i));
    }
} // dropping `p` ends read_q; END reaches printer through collatz; every worker is joined
