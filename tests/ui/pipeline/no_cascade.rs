use ezq::{pipeline, worker, Inbox, Outbox};

#[worker]
fn double(inbox: Inbox<u64>, outbox: Outbox<u64>) {
    for msg in inbox {
        outbox.put(msg.data * 2);
    }
}

#[worker]
fn shout(inbox: Inbox<String>, outbox: Outbox<String>) {
    for msg in inbox {
        outbox.put(msg.data.to_uppercase());
    }
}

// One mistake, one error: the code using the handle reports nothing more.
fn main() {
    let p = pipeline! {
        numbers -> double -> doubled -> shout -> words;
    };
    for i in 0..10u64 {
        p.numbers.put(i);
    }
    p.numbers.end();
    let all: Vec<String> = p.words.iter().map(|m| m.data).collect();
    assert!(all.is_empty());
    p.join().unwrap();
}