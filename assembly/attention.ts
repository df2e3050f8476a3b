// Scaled dot-product attention with grouped KV heads (contract: src/kernels/kernels.ts).
//   out[Tq, nHeads*hd], q[Tq, nHeads*hd], k/v[Tk, nKvHeads*hd]; query head h reads KV head h / group.
//
// Work is cut into Tq*nHeads units, one per (query row i, head h), numbered KV-head-major:
//   u = (kvh*Tq + i)*group + g,  h = kvh*group + g
// so neighbouring units share their keys and values: the query heads of one KV group (GQA) for the
// same row, or, without grouping, consecutive rows of one head (prefill). Units [u0, u1) are
// computed, so a pool can split the work.
//
// Units are processed in blocks, and each block in three passes over the keys (keys outer, units
// inner), so K and V are read from memory once for every unit of the block:
// - decode (Tq = 1): one block holds every unit (all heads of the one row); K and V are read row by
//   row, front to back, each row once per step (decodeScores, decodeAccumulate);
// - prefill (Tq > 1): when one head's K and V fit in half an L2 (Tk·hd·8 ≤ 512 KiB), a pair of
//   units at a time over all keys (they stay in cache anyway); past that, blocks of up to
//   QB_PREFILL units sharing one KV head and key blocks of KB_PREFILL rows (that head's K and V
//   block stays in L1/L2 while every query of the block uses it). Neighbouring units with the same
//   KV head go in pairs, which loads each key and value once for two queries.
//
// Per query (the same arithmetic in every blocking and pairing, so none of them changes a bit,
// and each query row equals the Tq = 1 call for that row):
// 1. Scores, 4 dot products at a time (4 keys of a query; in decode, 4 heads of a key): 4 f32x4
//    accumulators over d, each adding in d order (8 for a pair), then a shuffle transpose-add gives
//    the 4 dot products in one vector, lane i = (l0 + l2) + (l1 + l3) of accumulator i, whichever
//    q and k fed it (no scalar horizontal sums). Invisible keys get −Inf and are not read.
// 2. max over visible scores (NaN-ignoring, like the scalar twin), exp(s − max) with the SIMD exp,
//    f32 sum in 4 lanes. A query that sees no key (max = −Inf) gets zeros; one whose visible
//    scores are all NaN gets NaN.
// 3. out = Σ_j p_j v_j / sum over value chunks of VALUE_CHUNK keys: within a chunk each output
//    element accumulates over j in order from +0 (partial sums wait, exactly, between key blocks),
//    the chunks' sums are added in chunk order, then divided by the sum; keys with p_j = 0 (masked
//    or underflowed) are skipped, so Inf/NaN in a masked V row cannot leak in. (With Tk ≤ 512: one
//    chunk, the plain in-order sum.) Chunks let decode split its value pass across threads.
//
// `scores` is scratch private to the calling thread: attentionScratchBytes (src/kernels/wasm-exports.ts)
// = 4·(Tk + UNIT_INTS)·(units per block) bytes: each unit's scores row, then its descriptor; then
// (16-byte aligned) a narrow prefill's widened key block, then the rows of the value chunks after the
// first (decode: every later chunk's, [chunk − 1][unit][hd]; prefill: the current chunk's, [unit][hd]).
//
// A narrow KV cache (attention_bf16, attention_f16: k and v hold 16-bit values) is read where it
// lies and widened in registers, exactly (bf16: a shift; f16: integer ops and one exact multiply by
// 2^112, halfToFloat4 in elementwise.ts; no table, no f16 arithmetic). Every widened value then
// meets exactly the f32 arithmetic above, so a narrow call equals, bit for bit, the f32 call on the
// widened cache:
// - decode (Tq = 1) reads K and V rows in place (decodeScores<T>, decodeAccumulate<T>);
// - prefill widens the key block of the block's one KV head into scratch (WIDE_ROWS rows of hd f32
//   after the descriptors; unblocked prefill widens the head's Tk rows, ≤ 256 KiB by its bound)
//   and runs the f32 passes on it.
import { expShifted, rowMax } from './simd';
import { halfToFloat4 } from './elementwise';

// @ts-ignore: decorator
@inline function visible(i: i32, j: i32, Tk: i32, qPosI: i32, kPos: usize, allowed: usize): bool {
  if (kPos != 0 && load<i32>(kPos + (<usize>j << 2)) > qPosI) return false;
  if (allowed != 0 && load<u8>(allowed + <usize>i * Tk + j) == 0) return false;
  return true;
}

// [Σa0, Σa1, Σa2, Σa3], each lane sum taken as (l0 + l2) + (l1 + l3).
// @ts-ignore: decorator
@inline function transposeAdd(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const s01 = f32x4.add(v128.shuffle<f32>(a0, a1, 0, 4, 1, 5), v128.shuffle<f32>(a0, a1, 2, 6, 3, 7));
  const s23 = f32x4.add(v128.shuffle<f32>(a2, a3, 0, 4, 1, 5), v128.shuffle<f32>(a2, a3, 2, 6, 3, 7));
  return f32x4.add(v128.shuffle<f32>(s01, s23, 0, 1, 4, 5), v128.shuffle<f32>(s01, s23, 2, 3, 6, 7));
}

// Σ_d q[d]·k_r[d] over d < hd4 (a multiple of 4) for the four keys k0 + r·kvRow, as four 4-lane
// accumulators (lane l sums d ≡ l mod 4, in d order) reduced by transposeAdd. 16 floats per loop
// step with immediate load offsets (fewer address operations than one step per 4 floats), then
// 4 at a time; either way each accumulator adds its products in the same order.
// @ts-ignore: decorator
@inline function dot4(qp: usize, k0: usize, kvRow: usize, hd4: i32): v128 {
  let p0 = k0, p1 = k0 + kvRow, p2 = p1 + kvRow, p3 = p2 + kvRow, qq = qp;
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
  const end16 = qp + (<usize>(hd4 & ~15) << 2), end4 = qp + (<usize>hd4 << 2);
  while (qq < end16) {
    let qv = v128.load(qq);
    a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(p0))); a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(p1)));
    a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(p2))); a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(p3)));
    qv = v128.load(qq, 16);
    a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(p0, 16))); a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(p1, 16)));
    a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(p2, 16))); a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(p3, 16)));
    qv = v128.load(qq, 32);
    a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(p0, 32))); a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(p1, 32)));
    a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(p2, 32))); a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(p3, 32)));
    qv = v128.load(qq, 48);
    a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(p0, 48))); a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(p1, 48)));
    a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(p2, 48))); a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(p3, 48)));
    qq += 64; p0 += 64; p1 += 64; p2 += 64; p3 += 64;
  }
  while (qq < end4) {
    const qv = v128.load(qq);
    a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(p0))); a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(p1)));
    a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(p2))); a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(p3)));
    qq += 16; p0 += 16; p1 += 16; p2 += 16; p3 += 16;
  }
  return transposeAdd(a0, a1, a2, a3);
}

// The head-dim tail (d from hd4 to hd) of 4 dot products, summed from 0 and added to s last.
// @ts-ignore: decorator
@inline function addTail(s: v128, qp: usize, k0: usize, kvRow: usize, hd4: i32, hd: i32): v128 {
  if (hd4 == hd) return s;
  const k1 = k0 + kvRow, k2 = k1 + kvRow, k3 = k2 + kvRow;
  let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
  for (let d = hd4; d < hd; d++) {
    const o = <usize>d << 2;
    const qd = load<f32>(qp + o);
    t0 += qd * load<f32>(k0 + o); t1 += qd * load<f32>(k1 + o);
    t2 += qd * load<f32>(k2 + o); t3 += qd * load<f32>(k3 + o);
  }
  return f32x4.add(s, f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(t0), 1, t1), 2, t2), 3, t3));
}

// Sets lane l of s to −Inf where key j+l is invisible.
// @ts-ignore: decorator
@inline function maskBlock(s: v128, vis0: bool, vis1: bool, vis2: bool, vis3: bool): v128 {
  if (!vis0) s = f32x4.replace_lane(s, 0, -Infinity);
  if (!vis1) s = f32x4.replace_lane(s, 1, -Infinity);
  if (!vis2) s = f32x4.replace_lane(s, 2, -Infinity);
  if (!vis3) s = f32x4.replace_lane(s, 3, -Infinity);
  return s;
}

// Step 1 for one query over keys [j0, j1): sp[j] = scale·q·k_j, or −Inf where key j is invisible to row i.
function scoresOne(sp: usize, qp: usize, i: i32, qPosI: i32, kBase: usize, kvRow: usize, j0: i32, j1: i32, Tk: i32, hd: i32, scale: f32, kPos: usize, allowed: usize): void {
  const hd4 = hd & ~3;
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    const vis0 = visible(i, j, Tk, qPosI, kPos, allowed), vis1 = visible(i, j + 1, Tk, qPosI, kPos, allowed);
    const vis2 = visible(i, j + 2, Tk, qPosI, kPos, allowed), vis3 = visible(i, j + 3, Tk, qPosI, kPos, allowed);
    const out = sp + (<usize>j << 2);
    if (!(vis0 || vis1 || vis2 || vis3)) { v128.store(out, f32x4.splat(-Infinity)); continue; }
    const k0 = kBase + <usize>j * kvRow;
    const s = f32x4.mul(addTail(dot4(qp, k0, kvRow, hd4), qp, k0, kvRow, hd4, hd), f32x4.splat(scale));
    v128.store(out, maskBlock(s, vis0, vis1, vis2, vis3));
  }
  for (; j < j1; j++) {
    store<f32>(sp + (<usize>j << 2), visible(i, j, Tk, qPosI, kPos, allowed) ? dotRow<f32>(qp, kBase + <usize>j * kvRow, hd) * scale : -Infinity);
  }
}

// Step 1 for two queries against the same keys [j0, j1): each key row is loaded once for both.
function scoresTwo(sa: usize, sb: usize, qa: usize, qb: usize, ia: i32, ib: i32, qPosA: i32, qPosB: i32,
                   kBase: usize, kvRow: usize, j0: i32, j1: i32, Tk: i32, hd: i32, scale: f32, kPos: usize, allowed: usize): void {
  const hd4 = hd & ~3;
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    const va0 = visible(ia, j, Tk, qPosA, kPos, allowed), va1 = visible(ia, j + 1, Tk, qPosA, kPos, allowed);
    const va2 = visible(ia, j + 2, Tk, qPosA, kPos, allowed), va3 = visible(ia, j + 3, Tk, qPosA, kPos, allowed);
    const vb0 = visible(ib, j, Tk, qPosB, kPos, allowed), vb1 = visible(ib, j + 1, Tk, qPosB, kPos, allowed);
    const vb2 = visible(ib, j + 2, Tk, qPosB, kPos, allowed), vb3 = visible(ib, j + 3, Tk, qPosB, kPos, allowed);
    const outA = sa + (<usize>j << 2), outB = sb + (<usize>j << 2);
    if (!(va0 || va1 || va2 || va3 || vb0 || vb1 || vb2 || vb3)) {
      v128.store(outA, f32x4.splat(-Infinity));
      v128.store(outB, f32x4.splat(-Infinity));
      continue;
    }
    const k0 = kBase + <usize>j * kvRow, k1 = k0 + kvRow, k2 = k1 + kvRow, k3 = k2 + kvRow;
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (let d = 0; d < hd4; d += 4) {
      const o = <usize>d << 2;
      const qva = v128.load(qa + o), qvb = v128.load(qb + o);
      const kv0 = v128.load(k0 + o), kv1 = v128.load(k1 + o), kv2 = v128.load(k2 + o), kv3 = v128.load(k3 + o);
      a0 = f32x4.add(a0, f32x4.mul(qva, kv0)); b0 = f32x4.add(b0, f32x4.mul(qvb, kv0));
      a1 = f32x4.add(a1, f32x4.mul(qva, kv1)); b1 = f32x4.add(b1, f32x4.mul(qvb, kv1));
      a2 = f32x4.add(a2, f32x4.mul(qva, kv2)); b2 = f32x4.add(b2, f32x4.mul(qvb, kv2));
      a3 = f32x4.add(a3, f32x4.mul(qva, kv3)); b3 = f32x4.add(b3, f32x4.mul(qvb, kv3));
    }
    const scaleV = f32x4.splat(scale);
    const s = f32x4.mul(addTail(transposeAdd(a0, a1, a2, a3), qa, k0, kvRow, hd4, hd), scaleV);
    const t = f32x4.mul(addTail(transposeAdd(b0, b1, b2, b3), qb, k0, kvRow, hd4, hd), scaleV);
    v128.store(outA, maskBlock(s, va0, va1, va2, va3));
    v128.store(outB, maskBlock(t, vb0, vb1, vb2, vb3));
  }
  for (; j < j1; j++) {
    const kj = kBase + <usize>j * kvRow;
    store<f32>(sa + (<usize>j << 2), visible(ia, j, Tk, qPosA, kPos, allowed) ? dotRow<f32>(qa, kj, hd) * scale : -Infinity);
    store<f32>(sb + (<usize>j << 2), visible(ib, j, Tk, qPosB, kPos, allowed) ? dotRow<f32>(qb, kj, hd) * scale : -Infinity);
  }
}

// Step 2 in place on sp[0..Tk): p_j = exp(s_j − max); returns Σ p_j, or 0 (leaving sp as it is)
// when no key is visible. Otherwise the sum is ≥ 1 (the max itself contributes exp(0) = 1) or NaN.
// Every visible score NaN (a NaN query, or NaN keys: NaN in the K projection's weights) also leaves
// max = −Inf; that row is NaN, not "sees no key", so the NaN reaches the logits as in upstream's
// softmax, where the non-finite check names it.
function softmaxScores(sp: usize, Tk: i32): f32 {
  const max = rowMax(sp, Tk); // NaN never wins
  if (max == -Infinity) {
    for (let j = 0; j < Tk; j++) {
      if (isNaN(load<f32>(sp + (<usize>j << 2)))) {
        for (let i = 0; i < Tk; i++) store<f32>(sp + (<usize>i << 2), NaN);
        return NaN;
      }
    }
    return 0;
  }
  return expShifted(sp, sp, Tk, max);
}

// @ts-ignore: decorator
@inline function zeroRow(op: usize, hd: i32): void {
  memory.fill(op, 0, <usize>hd << 2);
}

// The partial sum of output element d: +0 on the first key block, else what the last block left.
// @ts-ignore: decorator
@inline function startAcc(p: usize, first: bool): v128 {
  return first ? f32x4.splat(0) : v128.load(p);
}

// Step 3 for one query over keys [j0, j1): op[d] += Σ_j p_j v_j[d] (op[d] = Σ when `first`), head
// dims in chunks of 32 (8 accumulators), then 4, then 1.
function accumulateOne(op: usize, sp: usize, vBase: usize, kvRow: usize, j0: i32, j1: i32, hd: i32, first: bool): void {
  let d = 0;
  for (; d + 32 <= hd; d += 32) {
    const o = op + (<usize>d << 2);
    let c0 = startAcc(o, first), c1 = startAcc(o + 16, first), c2 = startAcc(o + 32, first), c3 = startAcc(o + 48, first);
    let c4 = startAcc(o + 64, first), c5 = startAcc(o + 80, first), c6 = startAcc(o + 96, first), c7 = startAcc(o + 112, first);
    let vp = vBase + <usize>j0 * kvRow + (<usize>d << 2);
    for (let j = j0; j < j1; j++, vp += kvRow) {
      const pj = load<f32>(sp + (<usize>j << 2));
      if (pj == 0) continue;
      const pv = f32x4.splat(pj);
      c0 = f32x4.add(c0, f32x4.mul(pv, v128.load(vp)));
      c1 = f32x4.add(c1, f32x4.mul(pv, v128.load(vp, 16)));
      c2 = f32x4.add(c2, f32x4.mul(pv, v128.load(vp, 32)));
      c3 = f32x4.add(c3, f32x4.mul(pv, v128.load(vp, 48)));
      c4 = f32x4.add(c4, f32x4.mul(pv, v128.load(vp, 64)));
      c5 = f32x4.add(c5, f32x4.mul(pv, v128.load(vp, 80)));
      c6 = f32x4.add(c6, f32x4.mul(pv, v128.load(vp, 96)));
      c7 = f32x4.add(c7, f32x4.mul(pv, v128.load(vp, 112)));
    }
    v128.store(o, c0); v128.store(o, c1, 16); v128.store(o, c2, 32); v128.store(o, c3, 48);
    v128.store(o, c4, 64); v128.store(o, c5, 80); v128.store(o, c6, 96); v128.store(o, c7, 112);
  }
  for (; d + 4 <= hd; d += 4) {
    const o = op + (<usize>d << 2);
    let c0 = startAcc(o, first);
    let vp = vBase + <usize>j0 * kvRow + (<usize>d << 2);
    for (let j = j0; j < j1; j++, vp += kvRow) {
      const pj = load<f32>(sp + (<usize>j << 2));
      if (pj == 0) continue;
      c0 = f32x4.add(c0, f32x4.mul(f32x4.splat(pj), v128.load(vp)));
    }
    v128.store(o, c0);
  }
  for (; d < hd; d++) {
    const o = op + (<usize>d << 2);
    let c: f32 = first ? 0 : load<f32>(o);
    let vp = vBase + <usize>j0 * kvRow + (<usize>d << 2);
    for (let j = j0; j < j1; j++, vp += kvRow) {
      const pj = load<f32>(sp + (<usize>j << 2));
      if (pj == 0) continue;
      c += pj * load<f32>(vp);
    }
    store<f32>(o, c);
  }
}

// Step 3 for two queries sharing V over keys [j0, j1): head dims in chunks of 16 (4 accumulators
// per query), then 4, then 1. A key whose weight is 0 for one query is skipped for that query only.
function accumulateTwo(oa: usize, ob: usize, sa: usize, sb: usize, vBase: usize, kvRow: usize, j0: i32, j1: i32, hd: i32, first: bool): void {
  let d = 0;
  for (; d + 16 <= hd; d += 16) {
    const o = <usize>d << 2;
    let a0 = startAcc(oa + o, first), a1 = startAcc(oa + o + 16, first), a2 = startAcc(oa + o + 32, first), a3 = startAcc(oa + o + 48, first);
    let b0 = startAcc(ob + o, first), b1 = startAcc(ob + o + 16, first), b2 = startAcc(ob + o + 32, first), b3 = startAcc(ob + o + 48, first);
    let vp = vBase + <usize>j0 * kvRow + o;
    for (let j = j0; j < j1; j++, vp += kvRow) {
      const pa = load<f32>(sa + (<usize>j << 2)), pb = load<f32>(sb + (<usize>j << 2));
      if (pa == 0 && pb == 0) continue;
      const v0 = v128.load(vp), v1 = v128.load(vp, 16), v2 = v128.load(vp, 32), v3 = v128.load(vp, 48);
      if (pa != 0) {
        const p = f32x4.splat(pa);
        a0 = f32x4.add(a0, f32x4.mul(p, v0)); a1 = f32x4.add(a1, f32x4.mul(p, v1));
        a2 = f32x4.add(a2, f32x4.mul(p, v2)); a3 = f32x4.add(a3, f32x4.mul(p, v3));
      }
      if (pb != 0) {
        const p = f32x4.splat(pb);
        b0 = f32x4.add(b0, f32x4.mul(p, v0)); b1 = f32x4.add(b1, f32x4.mul(p, v1));
        b2 = f32x4.add(b2, f32x4.mul(p, v2)); b3 = f32x4.add(b3, f32x4.mul(p, v3));
      }
    }
    v128.store(oa + o, a0); v128.store(oa + o, a1, 16); v128.store(oa + o, a2, 32); v128.store(oa + o, a3, 48);
    v128.store(ob + o, b0); v128.store(ob + o, b1, 16); v128.store(ob + o, b2, 32); v128.store(ob + o, b3, 48);
  }
  for (; d + 4 <= hd; d += 4) {
    const o = <usize>d << 2;
    let a0 = startAcc(oa + o, first), b0 = startAcc(ob + o, first);
    let vp = vBase + <usize>j0 * kvRow + o;
    for (let j = j0; j < j1; j++, vp += kvRow) {
      const pa = load<f32>(sa + (<usize>j << 2)), pb = load<f32>(sb + (<usize>j << 2));
      if (pa != 0) a0 = f32x4.add(a0, f32x4.mul(f32x4.splat(pa), v128.load(vp)));
      if (pb != 0) b0 = f32x4.add(b0, f32x4.mul(f32x4.splat(pb), v128.load(vp)));
    }
    v128.store(oa + o, a0);
    v128.store(ob + o, b0);
  }
  for (; d < hd; d++) {
    const o = <usize>d << 2;
    let a: f32 = first ? 0 : load<f32>(oa + o), b: f32 = first ? 0 : load<f32>(ob + o);
    let vp = vBase + <usize>j0 * kvRow + o;
    for (let j = j0; j < j1; j++, vp += kvRow) {
      const pa = load<f32>(sa + (<usize>j << 2)), pb = load<f32>(sb + (<usize>j << 2));
      if (pa != 0) a += pa * load<f32>(vp);
      if (pb != 0) b += pb * load<f32>(vp);
    }
    store<f32>(oa + o, a);
    store<f32>(ob + o, b);
  }
}

// The end of step 3: op[d] = Σ_j p_j v_j[d] / sum (the same division, lane by lane, as a scalar).
function divideRow(op: usize, hd: i32, sum: f32): void {
  const sumv = f32x4.splat(sum);
  let d = 0;
  for (; d + 4 <= hd; d += 4) v128.store(op + (<usize>d << 2), f32x4.div(v128.load(op + (<usize>d << 2)), sumv));
  for (; d < hd; d++) store<f32>(op + (<usize>d << 2), load<f32>(op + (<usize>d << 2)) / sum);
}

// The prefill key-block length (a multiple of 4) and unit-block length past L2, and the K plus V
// bytes of one head below which prefill does not block; none of them changes a result.
const KB_PREFILL: i32 = 64;
// Keys per value chunk (spec/numerics.md, P·V): within a chunk each output element sums p_j·v_j in
// key order from +0; the chunks' sums are then added in chunk order. Decode splits its value pass
// across threads by chunks (the same bits on any thread count); a multiple of KB_PREFILL, so no
// prefill key block straddles two chunks.
const VALUE_CHUNK: i32 = 512;
const QB_PREFILL: i32 = 16;
const PREFILL_UNBLOCKED_BYTES: usize = 512 * 1024;
// The bytes from one unit's scores row to the next in scratch: Tk floats and one cache line more.
// Decode writes (and reads back) one score of every unit per key; at exactly Tk floats apart with
// Tk a multiple of 1024 those 16 lines of a 16-head model fall in one L1 set (64 sets of 12 ways on
// Zen 5) and evict each other on every key; a line of padding spreads them over 16 sets.
// @ts-ignore: decorator
@inline function scoresRowBytes(Tk: i32): usize {
  return (<usize>Tk << 2) + 64;
}

// A unit's descriptor in scratch, after the scores rows: its query row, that row's position (the
// softmax sum after pass 2), the byte offset of its head in q and out, and of its KV head in k and v.
const UNIT_INTS: i32 = 4;
const D_ROW = 0, D_QPOS = 4, D_Q = 8, D_KV = 12;

// Four narrow KV values at p, widened exactly to f32 lanes: T = u16 marks bf16, T = i16 IEEE half.
// @ts-ignore: decorator
@inline function widen4<T>(p: usize): v128 {
  const h = v128.load16x4_u(p);
  if (isSigned<T>()) return halfToFloat4(h);
  return i32x4.shl(h, 16);
}

// One narrow KV value at p, widened exactly (lane 0 of widen4's arithmetic).
// @ts-ignore: decorator
@inline function widen1<T>(p: usize): f32 {
  const h = <i32>load<u16>(p);
  if (isSigned<T>()) return f32x4.extract_lane(halfToFloat4(i32x4.splat(h)), 0);
  return reinterpret<f32>(h << 16);
}

// Decode passes (any KV element type T: f32, or narrow, widened in registers). Both read K and V
// row by row and each row front to back: the one order in which the prefetcher keeps up with DRAM
// (Zen 5, 16 × 128 heads, 4096 keys: reading two rows side by side to reuse each query vector for
// both keys, or four value rows to keep each output vector in a register over them, was 1.2-2.3×
// faster from cache and 1.3-2.3× slower from DRAM; scoring four heads of a row at a time, four
// streams 512 bytes apart, read K at 14 GB/s where one head after another reads it at 33, f32).
// So the work per byte is cut instead: 16 floats per loop step with immediate load offsets, and a
// narrow row loaded 8 values at a time and widened in two register ops (bf16: an interleave with
// zeros), where widen4 took a load and a shift for every 4. (Stepping the value pass's pointers
// instead of adding an offset to them, and 32 narrow values a step in the score pass, measured no
// faster: the score pass waits on its one accumulator chain per head.)

// Eight narrow values (one v128 load), widened exactly: elements 0-3 (lo) and 4-7 (hi). bf16 is the
// value in the high half of an f32 (an interleave with zeros); IEEE half goes through halfToFloat4.
// @ts-ignore: decorator
@inline function widenLo<T>(h8: v128): v128 {
  if (isSigned<T>()) return halfToFloat4(i32x4.extend_low_i16x8_u(h8));
  return v128.shuffle<i16>(i16x8.splat(0), h8, 0, 8, 1, 9, 2, 10, 3, 11);
}
// @ts-ignore: decorator
@inline function widenHi<T>(h8: v128): v128 {
  if (isSigned<T>()) return halfToFloat4(i32x4.extend_high_i16x8_u(h8));
  return v128.shuffle<i16>(i16x8.splat(0), h8, 4, 12, 5, 13, 6, 14, 7, 15);
}

// One cached value as f32 (f32 as stored; narrow widened exactly).
// @ts-ignore: decorator
@inline function kvAt<T>(p: usize): f32 {
  if (sizeof<T>() == 4) return load<f32>(p);
  return widen1<T>(p);
}

// One query head's q·k over a key row: one accumulator adding q[d..d+3]·k[d..d+3] in d order, its
// lanes summed (l0 + l2) + (l1 + l3), then the tail d ≥ hd & ~3 summed from +0 and added last —
// lane for lane the arithmetic of dot4 and transposeAdd, so a key's score does not depend on
// whether Tk put it in a block of 4 (prefill) or on the path that computed it (decode). 16 values
// a loop step on pointers with immediate offsets; a narrow row loaded 8 values at a time and
// widened exactly in two register ops, so its score equals the f32 call's on the widened cache.
// @ts-ignore: decorator
@inline function dotRow<T>(q: usize, k: usize, hd: i32): f32 {
  let acc = f32x4.splat(0);
  let qp = q, kp = k;
  const end16 = q + (<usize>(hd & ~15) << 2), end4 = q + (<usize>(hd & ~3) << 2), end = q + (<usize>hd << 2);
  if (sizeof<T>() == 4) {
    while (qp < end16) {
      acc = f32x4.add(acc, f32x4.mul(v128.load(qp), v128.load(kp)));
      acc = f32x4.add(acc, f32x4.mul(v128.load(qp, 16), v128.load(kp, 16)));
      acc = f32x4.add(acc, f32x4.mul(v128.load(qp, 32), v128.load(kp, 32)));
      acc = f32x4.add(acc, f32x4.mul(v128.load(qp, 48), v128.load(kp, 48)));
      qp += 64; kp += 64;
    }
  } else {
    while (qp < end16) {
      const h0 = v128.load(kp), h1 = v128.load(kp, 16);
      acc = f32x4.add(acc, f32x4.mul(v128.load(qp), widenLo<T>(h0)));
      acc = f32x4.add(acc, f32x4.mul(v128.load(qp, 16), widenHi<T>(h0)));
      acc = f32x4.add(acc, f32x4.mul(v128.load(qp, 32), widenLo<T>(h1)));
      acc = f32x4.add(acc, f32x4.mul(v128.load(qp, 48), widenHi<T>(h1)));
      qp += 64; kp += 32;
    }
  }
  while (qp < end4) {
    acc = f32x4.add(acc, f32x4.mul(v128.load(qp), sizeof<T>() == 4 ? v128.load(kp) : widen4<T>(kp)));
    qp += 16; kp += 4 * sizeof<T>();
  }
  let s = (f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 2)) + (f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 3));
  if (qp < end) {
    let t: f32 = 0;
    for (; qp < end; qp += 4, kp += sizeof<T>()) t += load<f32>(qp) * kvAt<T>(kp);
    s += t;
  }
  return s;
}

// Step 1 in decode for units [0, n) of the one query row, key rows [j0, j1): for each key row, the
// score of every unit in turn, so the row is read front to back, one head's values after another.
function decodeScores<T>(scores: usize, desc: usize, n: i32, q: usize, k: usize, kvRow: usize, Tk: i32, j0: i32, j1: i32, hd: i32, scale: f32,
                            qPosI: i32, kPos: usize, allowed: usize): void {
  const rowBytes = scoresRowBytes(Tk);
  const step = UNIT_INTS << 2;
  const kvShift: u32 = sizeof<T>() == 4 ? 0 : 1;
  for (let j = j0; j < j1; j++) {
    const sj = scores + (<usize>j << 2);
    if (!visible(0, j, Tk, qPosI, kPos, allowed)) {
      for (let a = 0; a < n; a++) store<f32>(sj + <usize>a * rowBytes, -Infinity);
      continue;
    }
    const kRow = k + <usize>j * kvRow;
    let dp = desc;
    for (let a = 0; a < n; a++, dp += step) {
      const qa = q + <usize>load<u32>(dp, D_Q), ka = kRow + <usize>(load<u32>(dp, D_KV) >> kvShift);
      store<f32>(sj + <usize>a * rowBytes, dotRow<T>(qa, ka, hd) * scale);
    }
  }
}

// Where unit a's sums over value chunk c go: chunk 0's into the unit's output row, a later chunk's
// into its row in `partials` ([chunk − 1][n][hd] f32).
// @ts-ignore: decorator
@inline function chunkRow(out: usize, partials: usize, dp: usize, n: i32, a: i32, c: i32, headBytes: usize): usize {
  return c == 0 ? out + <usize>load<u32>(dp, D_Q) : partials + (<usize>(c - 1) * <usize>n + <usize>a) * headBytes;
}

// Step 3 in decode for units [0, n) of the one query row over the keys of chunk c: for each value
// row, every live unit's p_j·v_j added into its chunk row (chunkRow, zeroed first), so each element
// accumulates from +0 over the chunk's keys in order, skipping p_j = 0, exactly as accumulateOne
// does (on the widened row if narrow).
function decodeAccumulate<T>(out: usize, partials: usize, scores: usize, desc: usize, n: i32, v: usize, kvRow: usize, Tk: i32, c: i32, hd: i32): void {
  const rowBytes = scoresRowBytes(Tk);
  const step = UNIT_INTS << 2;
  const kvShift: u32 = sizeof<T>() == 4 ? 0 : 1;
  const end16 = <usize>(hd & ~15) << 2, end4 = <usize>(hd & ~3) << 2, end = <usize>hd << 2;
  const headBytes = <usize>hd << 2;
  const j0 = c * VALUE_CHUNK, j1 = min(Tk, j0 + VALUE_CHUNK);
  let dp = desc;
  for (let a = 0; a < n; a++, dp += step) if (load<f32>(dp, D_QPOS) != 0) zeroRow(chunkRow(out, partials, dp, n, a, c, headBytes), hd);
  for (let j = j0; j < j1; j++) {
    const vRow = v + <usize>j * kvRow;
    dp = desc;
    let sp = scores + (<usize>j << 2);
    for (let a = 0; a < n; a++, dp += step, sp += rowBytes) {
      const p = load<f32>(sp);
      if (p == 0 || load<f32>(dp, D_QPOS) == 0) continue;
      const pv = f32x4.splat(p);
      const op = chunkRow(out, partials, dp, n, a, c, headBytes), vp = vRow + <usize>(load<u32>(dp, D_KV) >> kvShift);
      let o: usize = 0;
      if (sizeof<T>() == 4) {
        for (; o < end16; o += 64) {
          v128.store(op + o, f32x4.add(v128.load(op + o), f32x4.mul(pv, v128.load(vp + o))));
          v128.store(op + o, f32x4.add(v128.load(op + o, 16), f32x4.mul(pv, v128.load(vp + o, 16))), 16);
          v128.store(op + o, f32x4.add(v128.load(op + o, 32), f32x4.mul(pv, v128.load(vp + o, 32))), 32);
          v128.store(op + o, f32x4.add(v128.load(op + o, 48), f32x4.mul(pv, v128.load(vp + o, 48))), 48);
        }
      } else {
        for (; o < end16; o += 64) {
          const h = vp + (o >> 1);
          const h0 = v128.load(h), h1 = v128.load(h, 16);
          v128.store(op + o, f32x4.add(v128.load(op + o), f32x4.mul(pv, widenLo<T>(h0))));
          v128.store(op + o, f32x4.add(v128.load(op + o, 16), f32x4.mul(pv, widenHi<T>(h0))), 16);
          v128.store(op + o, f32x4.add(v128.load(op + o, 32), f32x4.mul(pv, widenLo<T>(h1))), 32);
          v128.store(op + o, f32x4.add(v128.load(op + o, 48), f32x4.mul(pv, widenHi<T>(h1))), 48);
        }
      }
      for (; o < end4; o += 16) {
        const x = sizeof<T>() == 4 ? v128.load(vp + o) : widen4<T>(vp + (o >> 1));
        v128.store(op + o, f32x4.add(v128.load(op + o), f32x4.mul(pv, x)));
      }
      for (; o < end; o += 4) store<f32>(op + o, load<f32>(op + o) + p * kvAt<T>(vp + (o >> 2) * sizeof<T>()));
    }
  }
}

// op[d] = op[d] + rp[d] for d < hd (a chunk's sums added to the total, lane by lane as a scalar).
function addRow(op: usize, rp: usize, hd: i32): void {
  let d = 0;
  for (; d + 4 <= hd; d += 4) v128.store(op + (<usize>d << 2), f32x4.add(v128.load(op + (<usize>d << 2)), v128.load(rp + (<usize>d << 2))));
  for (; d < hd; d++) store<f32>(op + (<usize>d << 2), load<f32>(op + (<usize>d << 2)) + load<f32>(rp + (<usize>d << 2)));
}

// The end of decode's step 3 for units [lo, hi): each live unit's output (chunk 0's sums) plus the
// later chunks' sums in chunk order, then divided by the unit's softmax sum.
function decodeCombine(out: usize, partials: usize, desc: usize, n: i32, Tk: i32, hd: i32, lo: i32, hi: i32): void {
  const chunks = (Tk + VALUE_CHUNK - 1) / VALUE_CHUNK;
  const headBytes = <usize>hd << 2;
  for (let a = lo; a < hi; a++) {
    const dp = desc + <usize>a * (UNIT_INTS << 2);
    const sum = load<f32>(dp, D_QPOS);
    if (sum == 0) continue;
    const op = out + <usize>load<u32>(dp, D_Q);
    for (let c = 1; c < chunks; c++) addRow(op, chunkRow(out, partials, dp, n, a, c, headBytes), hd);
    divideRow(op, hd, sum);
  }
}

// Widens rows [j0, j1) of one KV head (at `src`, narrow rows of kvRow bytes) into dst[j1 − j0][hd] f32.
function widenHead<T>(dst: usize, src: usize, kvRow: usize, j0: i32, j1: i32, hd: i32): void {
  const hd4 = hd & ~3;
  for (let j = j0; j < j1; j++) {
    const s = src + <usize>j * kvRow, o = dst + <usize>(j - j0) * (<usize>hd << 2);
    let d = 0;
    for (; d < hd4; d += 4) v128.store(o + (<usize>d << 2), widen4<T>(s + (<usize>d << 1)));
    for (; d < hd; d++) store<f32>(o + (<usize>d << 2), widen1<T>(s + (<usize>d << 1)));
  }
}

// Bytes of the narrow-prefill widening area after the descriptors (see attentionScratchBytes).
// @ts-ignore: decorator
@inline function wideOffset(n: i32, Tk: i32): usize {
  return (<usize>n * (scoresRowBytes(Tk) + (UNIT_INTS << 2)) + 15) & ~15;
}

// The descriptors of units [ub0, ub0 + n) at desc (qPos = 0: positions unused).
function writeDescriptors(desc: usize, ub0: i32, n: i32, Tq: i32, group: i32, qRow: usize, headBytes: usize, qPos: usize): void {
  for (let a = 0; a < n; a++) {
    const u = ub0 + a;
    const g = u % group, r = u / group;
    const i = r % Tq, kvh = r / Tq;
    const h = kvh * group + g;
    const dp = desc + <usize>a * (UNIT_INTS << 2);
    store<i32>(dp, i, D_ROW);
    store<i32>(dp, qPos != 0 ? load<i32>(qPos + (<usize>i << 2)) : 0, D_QPOS);
    store<u32>(dp, <u32>(<usize>i * qRow + <usize>h * headBytes), D_Q); // the same offset in q and out
    store<u32>(dp, <u32>(<usize>kvh * headBytes), D_KV);
  }
}

// Decode (Tq = 1) split into phases so that several threads share one call with every thread
// reading whole K and V rows (a split by heads gives each thread a slice of every row: on Zen 5
// two threads that way read at half the speed of one). `scores`: one scratch shared by all
// threads ([nHeads][Tk] scores, the descriptors, then the later value chunks' rows). The phases run
// in order, each thread on its own range [lo, hi) of the phase's axis:
//   0 DECODE_DESCRIPTORS: the descriptors of every unit (one thread; lo, hi unused),
//   1 DECODE_SCORES: the scores of key rows [lo, hi), every unit,
//   2 DECODE_SOFTMAX: the softmax of units [lo, hi) (a unit that sees no key gets a zero row),
//   3 DECODE_VALUES: Σ_j p_j v_j of value chunks [lo, hi) (VALUE_CHUNK keys each), every unit,
//   4 DECODE_COMBINE: the outputs of units [lo, hi): the chunks' sums added in order, ÷ sum.
// Each element gets exactly the arithmetic of the one-thread decode, so any split gives its bits.
// The values split by chunks of whole rows, not by heads: two threads reading alternate slices of
// every row were slower on Zen 5 than one reading the rows whole (bf16 4 ms vs 1.2 ms, f32 no
// faster, 16 × 128 at 4096 keys).
const DECODE_DESCRIPTORS = 0, DECODE_SCORES = 1, DECODE_SOFTMAX = 2, DECODE_VALUES = 3;
// @ts-ignore: decorator
@inline function attentionDecodeOf<T>(phase: i32, out: usize, q: usize, k: usize, v: usize, Tk: i32, nHeads: i32, nKvHeads: i32, hd: i32, scale: f32,
                                      qPos: usize, kPos: usize, allowed: usize, scores: usize, lo: i32, hi: i32): void {
  const kvRowT = <usize>(nKvHeads * hd) * sizeof<T>(); // a cache row's bytes as stored
  const rowBytes = scoresRowBytes(Tk);
  const desc = scores + <usize>nHeads * rowBytes;
  const partials = scores + wideOffset(nHeads, Tk);
  const usePos = qPos != 0 && kPos != 0;
  if (phase == DECODE_DESCRIPTORS) {
    writeDescriptors(desc, 0, nHeads, 1, nHeads / nKvHeads, <usize>(nHeads * hd) << 2, <usize>hd << 2, usePos ? qPos : 0);
  } else if (phase == DECODE_SCORES) {
    decodeScores<T>(scores, desc, nHeads, q, k, kvRowT, Tk, lo, hi, hd, scale, load<i32>(desc, D_QPOS), usePos ? kPos : 0, allowed);
  } else if (phase == DECODE_SOFTMAX) {
    for (let a = lo; a < hi; a++) {
      const dp = desc + <usize>a * (UNIT_INTS << 2);
      const sum = softmaxScores(scores + <usize>a * rowBytes, Tk);
      store<f32>(dp, sum, D_QPOS);
      if (sum == 0) zeroRow(out + <usize>load<u32>(dp, D_Q), hd);
    }
  } else if (phase == DECODE_VALUES) {
    for (let c = lo; c < hi; c++) decodeAccumulate<T>(out, partials, scores, desc, nHeads, v, kvRowT, Tk, c, hd);
  } else {
    decodeCombine(out, partials, desc, nHeads, Tk, hd, lo, hi);
  }
}

export function attention_decode(phase: i32, out: usize, q: usize, k: usize, v: usize, Tk: i32, nHeads: i32, nKvHeads: i32, hd: i32, scale: f32,
                                 qPos: usize, kPos: usize, allowed: usize, scores: usize, lo: i32, hi: i32): void {
  attentionDecodeOf<f32>(phase, out, q, k, v, Tk, nHeads, nKvHeads, hd, scale, qPos, kPos, allowed, scores, lo, hi);
}
export function attention_decode_bf16(phase: i32, out: usize, q: usize, k: usize, v: usize, Tk: i32, nHeads: i32, nKvHeads: i32, hd: i32, scale: f32,
                                      qPos: usize, kPos: usize, allowed: usize, scores: usize, lo: i32, hi: i32): void {
  attentionDecodeOf<u16>(phase, out, q, k, v, Tk, nHeads, nKvHeads, hd, scale, qPos, kPos, allowed, scores, lo, hi);
}
export function attention_decode_f16(phase: i32, out: usize, q: usize, k: usize, v: usize, Tk: i32, nHeads: i32, nKvHeads: i32, hd: i32, scale: f32,
                                     qPos: usize, kPos: usize, allowed: usize, scores: usize, lo: i32, hi: i32): void {
  attentionDecodeOf<i16>(phase, out, q, k, v, Tk, nHeads, nKvHeads, hd, scale, qPos, kPos, allowed, scores, lo, hi);
}

export function attention(out: usize, q: usize, k: usize, v: usize, Tq: i32, Tk: i32, nHeads: i32, nKvHeads: i32, hd: i32, scale: f32,
                          qPos: usize, kPos: usize, allowed: usize, scores: usize, u0: i32, u1: i32): void {
  attentionOf<f32>(out, q, k, v, Tq, Tk, nHeads, nKvHeads, hd, scale, qPos, kPos, allowed, scores, u0, u1);
}

// attention over a bf16 KV cache (k and v: [Tk, nKvHeads*hd] bf16 bits).
export function attention_bf16(out: usize, q: usize, k: usize, v: usize, Tq: i32, Tk: i32, nHeads: i32, nKvHeads: i32, hd: i32, scale: f32,
                               qPos: usize, kPos: usize, allowed: usize, scores: usize, u0: i32, u1: i32): void {
  attentionOf<u16>(out, q, k, v, Tq, Tk, nHeads, nKvHeads, hd, scale, qPos, kPos, allowed, scores, u0, u1);
}

// attention over an IEEE half KV cache (k and v: [Tk, nKvHeads*hd] f16 bits).
export function attention_f16(out: usize, q: usize, k: usize, v: usize, Tq: i32, Tk: i32, nHeads: i32, nKvHeads: i32, hd: i32, scale: f32,
                              qPos: usize, kPos: usize, allowed: usize, scores: usize, u0: i32, u1: i32): void {
  attentionOf<i16>(out, q, k, v, Tq, Tk, nHeads, nKvHeads, hd, scale, qPos, kPos, allowed, scores, u0, u1);
}

// T: the KV element (f32; u16 = bf16; i16 = IEEE half). The f32 instance is the kernel as it was.
// @ts-ignore: decorator
@inline function attentionOf<T>(out: usize, q: usize, k: usize, v: usize, Tq: i32, Tk: i32, nHeads: i32, nKvHeads: i32, hd: i32, scale: f32,
                          qPos: usize, kPos: usize, allowed: usize, scores: usize, u0: i32, u1: i32): void {
  const group = nHeads / nKvHeads;
  const qRow = <usize>(nHeads * hd) << 2, kvRow = <usize>(nKvHeads * hd) << 2, headBytes = <usize>hd << 2;
  const narrow = sizeof<T>() != 4, kvRowT = <usize>(nKvHeads * hd) * sizeof<T>(); // a cache row's bytes as stored
  const usePos = qPos != 0 && kPos != 0;
  const kPosp = usePos ? kPos : 0;
  const unitsPerKvHead = Tq * group;
  const unblocked = <usize>Tk * <usize>hd * 8 <= PREFILL_UNBLOCKED_BYTES;
  const qb = unblocked ? 2 : QB_PREFILL, kb = unblocked ? max(Tk, 1) : KB_PREFILL;
  let ub0 = u0;
  while (ub0 < u1) {
    // This block: decode, every unit (one row); prefill, a pair or up to QB_PREFILL units of one KV head.
    const ub1 = Tq == 1 ? u1 : min(u1, min(ub0 + qb, (ub0 / unitsPerKvHead + 1) * unitsPerKvHead));
    const n = ub1 - ub0;
    const rowBytes = scoresRowBytes(Tk);
    const desc = scores + <usize>n * rowBytes; // [n][UNIT_INTS]
    writeDescriptors(desc, ub0, n, Tq, group, qRow, headBytes, usePos ? qPos : 0);
    // Pass 1: scores, key blocks outer.
    if (Tq == 1) {
      decodeScores<T>(scores, desc, n, q, k, kvRowT, Tk, 0, Tk, hd, scale, load<i32>(desc, D_QPOS), kPosp, allowed);
    } else for (let j0 = 0; j0 < Tk; j0 += kb) {
      const j1 = min(Tk, j0 + kb);
      // narrow: the block's one KV head, keys [j0, j1), widened into scratch and read from there
      const wide = scores + wideOffset(n, Tk);
      if (narrow) widenHead<T>(wide, k + (<usize>load<u32>(desc, D_KV) >> 1), kvRowT, j0, j1, hd);
      let a = 0;
      while (a < n) {
        const dp = desc + <usize>a * (UNIT_INTS << 2);
        const kvOff = <usize>load<u32>(dp, D_KV);
        const kB = narrow ? wide - <usize>j0 * headBytes : k + kvOff, kR = narrow ? headBytes : kvRow; // row j at kB + j·kR
        const sa = scores + <usize>a * rowBytes;
        if (a + 1 < n && <usize>load<u32>(dp, D_KV + (UNIT_INTS << 2)) == kvOff) {
          const dq = dp + (UNIT_INTS << 2);
          scoresTwo(sa, sa + rowBytes, q + <usize>load<u32>(dp, D_Q), q + <usize>load<u32>(dq, D_Q), load<i32>(dp, D_ROW), load<i32>(dq, D_ROW),
                    load<i32>(dp, D_QPOS), load<i32>(dq, D_QPOS), kB, kR, j0, j1, Tk, hd, scale, kPosp, allowed);
          a += 2;
        } else {
          scoresOne(sa, q + <usize>load<u32>(dp, D_Q), load<i32>(dp, D_ROW), load<i32>(dp, D_QPOS), kB, kR, j0, j1, Tk, hd, scale, kPosp, allowed);
          a += 1;
        }
      }
    }
    // Pass 2: softmax per query; the sum replaces the row's position in its descriptor (a query
    // that sees no key gets sum 0 and an all-zero output).
    for (let a = 0; a < n; a++) {
      const dp = desc + <usize>a * (UNIT_INTS << 2);
      const sum = softmaxScores(scores + <usize>a * rowBytes, Tk);
      store<f32>(dp, sum, D_QPOS);
      if (sum == 0) zeroRow(out + <usize>load<u32>(dp, D_Q), hd);
    }
    // Pass 3: P·V, key blocks outer, partial sums in out (and, past the first value chunk, in the
    // chunk rows).
    if (Tq == 1) {
      const partials = scores + wideOffset(n, Tk);
      const chunks = (Tk + VALUE_CHUNK - 1) / VALUE_CHUNK;
      for (let c = 0; c < chunks; c++) decodeAccumulate<T>(out, partials, scores, desc, n, v, kvRowT, Tk, c, hd);
      decodeCombine(out, partials, desc, n, Tk, hd, 0, n);
      ub0 = ub1;
      continue;
    }
    // Key blocks cut at value-chunk boundaries: chunk 0 sums in the output rows, a later chunk in
    // the block's rows after the scratch's widening area ([n][hd] f32), added to the output rows
    // when the chunk ends — the same sums, in the same order, as decode's.
    const wide = scores + wideOffset(n, Tk);
    const chunkRows = wide + (narrow ? <usize>kb * headBytes : 0);
    for (let j0 = 0; j0 < Tk; ) {
      const c = j0 / VALUE_CHUNK, chunkEnd = min(Tk, (c + 1) * VALUE_CHUNK);
      const j1 = min(chunkEnd, j0 + kb);
      const first = j0 == c * VALUE_CHUNK;
      if (narrow) widenHead<T>(wide, v + (<usize>load<u32>(desc, D_KV) >> 1), kvRowT, j0, j1, hd);
      let a = 0;
      while (a < n) {
        const dp = desc + <usize>a * (UNIT_INTS << 2);
        const sa = scores + <usize>a * rowBytes;
        const kvOff = <usize>load<u32>(dp, D_KV);
        const vB = narrow ? wide - <usize>j0 * headBytes : v + kvOff, vR = narrow ? headBytes : kvRow; // row j at vB + j·vR
        const live = load<f32>(dp, D_QPOS) != 0;
        const oa = c == 0 ? out + <usize>load<u32>(dp, D_Q) : chunkRows + <usize>a * headBytes;
        if (a + 1 < n && <usize>load<u32>(dp, D_KV + (UNIT_INTS << 2)) == kvOff) {
          const dq = dp + (UNIT_INTS << 2);
          const liveB = load<f32>(dq, D_QPOS) != 0;
          const ob = c == 0 ? out + <usize>load<u32>(dq, D_Q) : oa + headBytes;
          if (live && liveB) accumulateTwo(oa, ob, sa, sa + rowBytes, vB, vR, j0, j1, hd, first);
          else if (live) accumulateOne(oa, sa, vB, vR, j0, j1, hd, first);
          else if (liveB) accumulateOne(ob, sa + rowBytes, vB, vR, j0, j1, hd, first);
          a += 2;
        } else {
          if (live) accumulateOne(oa, sa, vB, vR, j0, j1, hd, first);
          a += 1;
        }
      }
      if (c > 0 && j1 == chunkEnd) {
        for (let a = 0; a < n; a++) {
          const dp = desc + <usize>a * (UNIT_INTS << 2);
          if (load<f32>(dp, D_QPOS) != 0) addRow(out + <usize>load<u32>(dp, D_Q), chunkRows + <usize>a * headBytes, hd);
        }
      }
      j0 = j1;
    }
    for (let a = 0; a < n; a++) {
      const dp = desc + <usize>a * (UNIT_INTS << 2);
      const sum = load<f32>(dp, D_QPOS);
      if (sum != 0) divideRow(out + <usize>load<u32>(dp, D_Q), hd, sum);
    }
    ub0 = ub1;
  }
}
