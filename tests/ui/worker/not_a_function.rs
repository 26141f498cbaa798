use ezq::worker;

#[worker]
struct Stage;

fn main() {}
