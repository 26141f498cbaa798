//! Python ezq's "sum" example with the runtime API, by hand: several workers
//! read one queue and each puts its subtotal on another.

use ezq::{Msg, Queue};

fn worker(in_q: Queue<u64>, out_q: Queue<u64>) {
    let mut count = 0;
    for msg in ezq::iter_msg(&in_q) {
        count += msg.data;
    }
    ezq::put_msg(&out_q, Msg::new(count));
}

fn main() {
    let in_q = Queue::new();
    let out_q = Queue::new();
    let workers: Vec<ezq::Worker> = (0..ezq::num_cpus())
        .map(|_| {
            let (i, o) = (in_q.clone(), out_q.clone());
            ezq::run(move || worker(i, o))
        })
        .collect();
    for i in 0..1000u64 {
        ezq::put_msg(&in_q, i); // plain data is a Msg with default kind and order
    }
    ezq::endq_and_wait(&in_q, workers).expect("a worker failed");
    let result: u64 = ezq::iter_q(&out_q).map(|msg| msg.data).sum();
    assert_eq!(result, (0..1000).sum());
    println!("{result}");
}
