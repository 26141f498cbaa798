use ezq::{pipeline, worker, Inbox};

#[worker]
fn printer(inbox: Inbox<u64>) {
    for msg in inbox {
        println!("{}", msg.data);
    }
}

fn main() {
    let _p = pipeline! {
        numbers -> printer -> printed;
    };
}