use ezq::pipeline;

fn main() {
    let _p = pipeline! {
        a -> |x: u64| x * 2 -> b;
    };
}
