// Scaled dot-product attention with grouped KV heads (contract: src/kernels/kernels.ts).
//   out[Tq, nHeads*hd], q[Tq, nHeads*hd], k/v[Tk, nKvHeads*hd]; query head h reads KV head h / group.
//
// Work is cut into Tq*nHeads units, one per (query row i, head h), numbered KV-head-major:
//   u = (kvh*Tq + i)*group + g,  h = kvh*group + g
// so neighbouring units share their keys and values: the query heads of one KV group (GQA) for the
// same row, or, without grouping, consecutive rows of one head (prefill). Units [u0, u1) are
// computed, so a pool can split the work; neighbours are processed in pairs, which reads each key
// and value row once for two queries. Pairing never changes a result: every output element is
// computed with the same arithmetic either way.
// `scores` is scratch for 2*Tk f32, private to the calling thread.
//
// Per query:
// 1. Scores, 4 keys at a time: 4 f32x4 accumulators over d (8 for a pair), then a shuffle
//    transpose-add gives the 4 dot products in one vector (no scalar horizontal sums). Invisible
//    keys get −Inf; a block of 4 keys invisible to both queries is skipped.
// 2. max over visible scores (NaN-ignoring, like the scalar twin), exp(s − max) with the SIMD exp,
//    f32 sum in 4 lanes. A query that sees no key (max = −Inf) gets zeros.
// 3. out = Σ_j p_j v_j / sum, each output element accumulated over j in order; keys with p_j = 0
//    (masked or underflowed) are skipped, so Inf/NaN in a masked V row cannot leak in.
import { expShifted, rowMax } from './simd';

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

// Dot product q·k for a key outside a block of 4, with exactly the arithmetic the block applies
// to each of its keys, so a key's score does not depend on whether Tk put it in a block.
// @ts-ignore: decorator
@inline function dot(q: usize, k: usize, hd: i32): f32 {
  let acc = f32x4.splat(0);
  let d = 0;
  for (; d + 4 <= hd; d += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(q + (<usize>d << 2)), v128.load(k + (<usize>d << 2))));
  let s = (f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 2)) + (f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 3));
  if (d < hd) {
    let t: f32 = 0;
    for (; d < hd; d++) t += load<f32>(q + (<usize>d << 2)) * load<f32>(k + (<usize>d << 2));
    s += t;
  }
  return s;
}

// Step 1 for one query: sp[j] = scale·q·k_j, or −Inf where key j is invisible to row i.
function scoresOne(sp: usize, qp: usize, i: i32, qPosI: i32, kBase: usize, kvRow: usize, Tk: i32, hd: i32, scale: f32, kPos: usize, allowed: usize): void {
  const hd4 = hd & ~3;
  let j = 0;
  for (; j + 4 <= Tk; j += 4) {
    const vis0 = visible(i, j, Tk, qPosI, kPos, allowed), vis1 = visible(i, j + 1, Tk, qPosI, kPos, allowed);
    const vis2 = visible(i, j + 2, Tk, qPosI, kPos, allowed), vis3 = visible(i, j + 3, Tk, qPosI, kPos, allowed);
    const out = sp + (<usize>j << 2);
    if (!(vis0 || vis1 || vis2 || vis3)) { v128.store(out, f32x4.splat(-Infinity)); continue; }
    const k0 = kBase + <usize>j * kvRow, k1 = k0 + kvRow, k2 = k1 + kvRow, k3 = k2 + kvRow;
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    for (let d = 0; d < hd4; d += 4) {
      const o = <usize>d << 2;
      const qv = v128.load(qp + o);
      a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(k0 + o)));
      a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(k1 + o)));
      a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(k2 + o)));
      a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(k3 + o)));
    }
    const s = f32x4.mul(addTail(transposeAdd(a0, a1, a2, a3), qp, k0, kvRow, hd4, hd), f32x4.splat(scale));
    v128.store(out, maskBlock(s, vis0, vis1, vis2, vis3));
  }
  for (; j < Tk; j++) {
    store<f32>(sp + (<usize>j << 2), visible(i, j, Tk, qPosI, kPos, allowed) ? dot(qp, kBase + <usize>j * kvRow, hd) * scale : -Infinity);
  }
}

// Step 1 for two queries against the same keys: each key row is loaded once for both.
function scoresTwo(sa: usize, sb: usize, qa: usize, qb: usize, ia: i32, ib: i32, qPosA: i32, qPosB: i32,
                   kBase: usize, kvRow: usize, Tk: i32, hd: i32, scale: f32, kPos: usize, allowed: usize): void {
  const hd4 = hd & ~3;
  let j = 0;
  for (; j + 4 <= Tk; j += 4) {
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
  for (; j < Tk; j++) {
    const kj = kBase + <usize>j * kvRow;
    store<f32>(sa + (<usize>j << 2), visible(ia, j, Tk, qPosA, kPos, allowed) ? dot(qa, kj, hd) * scale : -Infinity);
    store<f32>(sb + (<usize>j << 2), visible(ib, j, Tk, qPosB, kPos, allowed) ? dot(qb, kj, hd) * scale : -Infinity);
  }
}

// Step 2 in place on sp[0..Tk): p_j = exp(s_j − max); returns Σ p_j, or 0 (leaving sp as it is)
// when no key is visible. Otherwise the sum is ≥ 1 (the max itself contributes exp(0) = 1) or NaN.
function softmaxScores(sp: usize, Tk: i32): f32 {
  const max = rowMax(sp, Tk); // NaN never wins
  if (max == -Infinity) return 0;
  return expShifted(sp, sp, Tk, max);
}

// @ts-ignore: decorator
@inline function zeroRow(op: usize, hd: i32): void {
  memory.fill(op, 0, <usize>hd << 2);
}

// Step 3 for one query: op[d] = Σ_j p_j v_j[d] / sum; head dims in chunks of 32 (8 accumulators),
// then 4, then 1.
function weightedSumOne(op: usize, sp: usize, vBase: usize, kvRow: usize, Tk: i32, hd: i32, sum: f32): void {
  const sumv = f32x4.splat(sum);
  let d = 0;
  for (; d + 32 <= hd; d += 32) {
    let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    let vp = vBase + (<usize>d << 2);
    for (let j = 0; j < Tk; j++, vp += kvRow) {
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
    const o = op + (<usize>d << 2);
    v128.store(o, f32x4.div(c0, sumv)); v128.store(o, f32x4.div(c1, sumv), 16);
    v128.store(o, f32x4.div(c2, sumv), 32); v128.store(o, f32x4.div(c3, sumv), 48);
    v128.store(o, f32x4.div(c4, sumv), 64); v128.store(o, f32x4.div(c5, sumv), 80);
    v128.store(o, f32x4.div(c6, sumv), 96); v128.store(o, f32x4.div(c7, sumv), 112);
  }
  for (; d + 4 <= hd; d += 4) {
    let c0 = f32x4.splat(0);
    let vp = vBase + (<usize>d << 2);
    for (let j = 0; j < Tk; j++, vp += kvRow) {
      const pj = load<f32>(sp + (<usize>j << 2));
      if (pj == 0) continue;
      c0 = f32x4.add(c0, f32x4.mul(f32x4.splat(pj), v128.load(vp)));
    }
    v128.store(op + (<usize>d << 2), f32x4.div(c0, sumv));
  }
  for (; d < hd; d++) {
    let c: f32 = 0;
    let vp = vBase + (<usize>d << 2);
    for (let j = 0; j < Tk; j++, vp += kvRow) {
      const pj = load<f32>(sp + (<usize>j << 2));
      if (pj == 0) continue;
      c += pj * load<f32>(vp);
    }
    store<f32>(op + (<usize>d << 2), c / sum);
  }
}

// Step 3 for two queries sharing V: head dims in chunks of 16 (4 accumulators per query), then 4,
// then 1. A key whose weight is 0 for one query is skipped for that query only.
function weightedSumTwo(oa: usize, ob: usize, sa: usize, sb: usize, vBase: usize, kvRow: usize, Tk: i32, hd: i32, sumA: f32, sumB: f32): void {
  const sumAv = f32x4.splat(sumA), sumBv = f32x4.splat(sumB);
  let d = 0;
  for (; d + 16 <= hd; d += 16) {
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    let vp = vBase + (<usize>d << 2);
    for (let j = 0; j < Tk; j++, vp += kvRow) {
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
    const o = <usize>d << 2;
    v128.store(oa + o, f32x4.div(a0, sumAv)); v128.store(oa + o, f32x4.div(a1, sumAv), 16);
    v128.store(oa + o, f32x4.div(a2, sumAv), 32); v128.store(oa + o, f32x4.div(a3, sumAv), 48);
    v128.store(ob + o, f32x4.div(b0, sumBv)); v128.store(ob + o, f32x4.div(b1, sumBv), 16);
    v128.store(ob + o, f32x4.div(b2, sumBv), 32); v128.store(ob + o, f32x4.div(b3, sumBv), 48);
  }
  for (; d + 4 <= hd; d += 4) {
    let a0 = f32x4.splat(0), b0 = a0;
    let vp = vBase + (<usize>d << 2);
    for (let j = 0; j < Tk; j++, vp += kvRow) {
      const pa = load<f32>(sa + (<usize>j << 2)), pb = load<f32>(sb + (<usize>j << 2));
      if (pa != 0) a0 = f32x4.add(a0, f32x4.mul(f32x4.splat(pa), v128.load(vp)));
      if (pb != 0) b0 = f32x4.add(b0, f32x4.mul(f32x4.splat(pb), v128.load(vp)));
    }
    v128.store(oa + (<usize>d << 2), f32x4.div(a0, sumAv));
    v128.store(ob + (<usize>d << 2), f32x4.div(b0, sumBv));
  }
  for (; d < hd; d++) {
    let a: f32 = 0, b: f32 = 0;
    let vp = vBase + (<usize>d << 2);
    for (let j = 0; j < Tk; j++, vp += kvRow) {
      const pa = load<f32>(sa + (<usize>j << 2)), pb = load<f32>(sb + (<usize>j << 2));
      if (pa != 0) a += pa * load<f32>(vp);
      if (pb != 0) b += pb * load<f32>(vp);
    }
    store<f32>(oa + (<usize>d << 2), a / sumA);
    store<f32>(ob + (<usize>d << 2), b / sumB);
  }
}

export function attention(out: usize, q: usize, k: usize, v: usize, Tq: i32, Tk: i32, nHeads: i32, nKvHeads: i32, hd: i32, scale: f32,
                          qPos: usize, kPos: usize, allowed: usize, scores: usize, u0: i32, u1: i32): void {
  const group = nHeads / nKvHeads;
  const qRow = <usize>(nHeads * hd) << 2, kvRow = <usize>(nKvHeads * hd) << 2, headBytes = <usize>hd << 2;
  const usePos = qPos != 0 && kPos != 0;
  const kPosp = usePos ? kPos : 0;
  const sa = scores, sb = scores + (<usize>Tk << 2);
  let u = u0;
  while (u < u1) {
    const g = u % group, r = u / group;
    const i = r % Tq, kvh = r / Tq;
    const h = kvh * group + g;
    const kBase = k + <usize>kvh * headBytes, vBase = v + <usize>kvh * headBytes;
    const qa = q + <usize>i * qRow + <usize>h * headBytes, oa = out + <usize>i * qRow + <usize>h * headBytes;
    const qPosA = usePos ? load<i32>(qPos + (<usize>i << 2)) : 0;
    // The partner unit u + 1: the next head of the group (same row), or without grouping the next row.
    const paired = u + 1 < u1 && (group > 1 ? g + 1 < group : i + 1 < Tq);
    if (!paired) {
      scoresOne(sa, qa, i, qPosA, kBase, kvRow, Tk, hd, scale, kPosp, allowed);
      const sum = softmaxScores(sa, Tk);
      if (sum == 0) zeroRow(oa, hd);
      else weightedSumOne(oa, sa, vBase, kvRow, Tk, hd, sum);
      u += 1;
      continue;
    }
    const ib = group > 1 ? i : i + 1;
    const hb = group > 1 ? h + 1 : h;
    const qb = q + <usize>ib * qRow + <usize>hb * headBytes, ob = out + <usize>ib * qRow + <usize>hb * headBytes;
    const qPosB = usePos ? load<i32>(qPos + (<usize>ib << 2)) : 0;
    scoresTwo(sa, sb, qa, qb, i, ib, qPosA, qPosB, kBase, kvRow, Tk, hd, scale, kPosp, allowed);
    const sumA = softmaxScores(sa, Tk), sumB = softmaxScores(sb, Tk);
    if (sumA != 0 && sumB != 0) {
      weightedSumTwo(oa, ob, sa, sb, vBase, kvRow, Tk, hd, sumA, sumB);
    } else {
      if (sumA == 0) zeroRow(oa, hd); else weightedSumOne(oa, sa, vBase, kvRow, Tk, hd, sumA);
      if (sumB == 0) zeroRow(ob, hd); else weightedSumOne(ob, sb, vBase, kvRow, Tk, hd, sumB);
    }
    u += 2;
  }
}
