use ezq::worker;

#[worker]
fn nothing(count: u64) {
    println!("{count}");
}

fn main() {}
