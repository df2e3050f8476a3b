// Benchmark baselines, not model kernels. stream_read_f32: the memory-stream read the decode
// and attention benchmarks compare with (bench/stream-baseline.ts): reads n f32 from
// p once, front to back, the way a GEMV streams its weights, and returns their sum so the loads
// cannot be optimised away. Four independent accumulators keep the add latency off the critical
// path, so the loop is bound by memory bandwidth, not by the adder. n must be a multiple of 16.
export function stream_read_f32(p: usize, n: i32): f32 {
  let acc0 = f32x4.splat(0);
  let acc1 = f32x4.splat(0);
  let acc2 = f32x4.splat(0);
  let acc3 = f32x4.splat(0);
  const end = p + (<usize>n << 2);
  for (let q = p; q < end; q += 64) { // one 64-byte cache line per iteration
    acc0 = f32x4.add(acc0, v128.load(q));
    acc1 = f32x4.add(acc1, v128.load(q, 16));
    acc2 = f32x4.add(acc2, v128.load(q, 32));
    acc3 = f32x4.add(acc3, v128.load(q, 48));
  }
  const sum = f32x4.add(f32x4.add(acc0, acc1), f32x4.add(acc2, acc3));
  return f32x4.extract_lane(sum, 0) + f32x4.extract_lane(sum, 1) + f32x4.extract_lane(sum, 2) + f32x4.extract_lane(sum, 3);
}

// Clock probe for the benchmark (bench/cpu.ts): n iterations of 32 dependent steps, each an add
// then an xor that needs the add's result: two 1-cycle ops in sequence on every x86 and ARM core,
// so a step takes 2 cycles and the loop 64·n. b and c come from the caller, so the compiler cannot
// fold the chain.
export function clock_chain(n: i32, b: i32, c: i32): i32 {
  let a = n;
  for (let i = 0; i < n; i++) {
    a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c;
    a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c;
    a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c;
    a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c;
    a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c;
    a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c;
    a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c;
    a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c; a = (a + b) ^ c;
  }
  return a;
}
