//! Python ezq's "read and write queues" example with the runtime API, by
//! hand: collatz workers compute one step for each number, and one printer
//! prints the results in order.

use ezq::{Msg, Queue};

fn printer(write_q: Queue<(u64, u64)>) {
    for msg in ezq::sortiter(ezq::iter_msg(&write_q)) {
        println!("{:?}", msg.data);
    }
}

fn collatz(read_q: Queue<u64>, write_q: Queue<(u64, u64)>) {
    for msg in ezq::iter_msg(&read_q) {
        let n = msg.data;
        if msg.kind == "EVEN" {
            ezq::put_msg(&write_q, Msg::new((n, n / 2)).kind("EVEN").order(msg.order));
        } else if msg.kind == "ODD" {
            ezq::put_msg(
                &write_q,
                Msg::new((n, 3 * n + 1)).kind("ODD").order(msg.order),
            );
        }
    }
}

fn main() {
    let (read_q, write_q) = (Queue::new(), Queue::new());
    let readers: Vec<ezq::Worker> = (0..(ezq::num_cpus() - 1).max(1))
        .map(|_| {
            let (r, w) = (read_q.clone(), write_q.clone());
            ezq::run_named("collatz", move || collatz(r, w))
        })
        .collect();
    let writer = {
        let w = write_q.clone();
        ezq::run_named("printer", move || printer(w))
    };
    for i in 0..40u64 {
        let kind = if i % 2 == 0 { "EVEN" } else { "ODD" };
        ezq::put_msg(&read_q, Msg::new(i).kind(kind).order(i));
    }
    ezq::endq_and_wait(&read_q, readers).expect("a collatz worker failed");
    ezq::endq_and_wait(&write_q, [writer]).expect("the printer failed");
}
