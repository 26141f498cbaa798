"""The seed README's "Sum Messages" example (Python ezq 2.x), parameterised.

Usage: python python_sum.py N

Runs ezq.NUM_CPUS process workers that sum N messages, exactly as the seed
README does for N = 1000, and prints one line:

    python_sum version=.. n=.. workers=.. seconds=.. rate=..

`seconds` runs from before the workers start to the checked result, like the
Rust side of benches/compare-python.sh (interpreter start-up and `import ezq`
are not counted). A wrong total fails the assert: the exit status is non-zero.
"""

import sys
import time

import ezq


def worker(in_q, out_q):
    """Add up all the messges."""
    count = 0
    for msg in ezq.iter_msg(in_q):
        # you could check `msg.kind` if there's different kinds of work
        count += msg.data
    # when `in_q` is done, put the result on `out_q`
    ezq.put_msg(out_q, data=count)


def main(n):
    """Run several workers."""
    start = time.perf_counter()
    in_q = ezq.Queue()  # to send work
    out_q = ezq.Queue()  # to get results
    workers = [ezq.run(worker, in_q, out_q) for _ in range(ezq.NUM_CPUS)]
    # workers started
    for i in range(n):
        ezq.put_msg(in_q, data=i)  # send work
    ezq.endq_and_wait(in_q, workers)
    # all workers are done
    result = sum(msg.data for msg in ezq.iter_q(out_q))
    elapsed = time.perf_counter() - start
    assert result == sum(x for x in range(n)), f"wrong total {result}"
    print(
        f"python_sum version={ezq.__version__} n={n} workers={ezq.NUM_CPUS} "
        f"seconds={elapsed:.6f} rate={n / elapsed:.0f}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
