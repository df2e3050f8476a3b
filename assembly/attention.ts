// Scaled dot-product attention with grouped KV heads (contract: src/kernels/kernels.ts).
//   out[Tq, nHeads*hd], q[Tq, nHeads*hd], k/v[Tk, nKvHeads*hd]; query head h reads KV head h / group.
// Per (query row i, head h), the "unit" u = i*nHeads + h; units [u0, u1) are computed so a pool can
// split the work. `scores` is scratch for Tk f32, private to the calling thread.
//
// 1. Scores, 4 keys at a time: 4 f32x4 accumulators over d, then a shuffle transpose-add gives the
//    4 dot products in one vector (no scalar horizontal sums). Invisible keys get −Inf; a block of 4
//    invisible keys is skipped without computing its dots.
// 2. max over visible scores (NaN-ignoring, like the scalar twin), exp(s − max) with the SIMD exp,
//    f32 sum in 4 lanes. A row that sees no key (max = −Inf) gets zeros.
// 3. out = Σ_j p_j v_j / sum, head dims in chunks of 32 (8 accumulators), then 4, then 1; keys with
//    p_j = 0 (masked or underflowed) are skipped, so Inf/NaN in a masked V row cannot leak in.
import { exp4 } from './simd';

// @ts-ignore: decorator
@inline function visible(i: i32, j: i32, Tk: i32, qPosI: i32, kPos: usize, allowed: usize): bool {
  if (kPos != 0 && load<i32>(kPos + (<usize>j << 2)) > qPosI) return false;
  if (allowed != 0 && load<u8>(allowed + <usize>i * Tk + j) == 0) return false;
  return true;
}

// Dot product q·k over hd elements for a key outside a block of 4, with exactly the arithmetic
// the 4-key block applies to each of its keys (lanes summed as (l0 + l2) + (l1 + l3), the scalar
// head-dim tail summed separately and added last), so a key's score does not depend on whether
// Tk put it in a block or in the tail.
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

export function attention(out: usize, q: usize, k: usize, v: usize, Tq: i32, Tk: i32, nHeads: i32, nKvHeads: i32, hd: i32, scale: f32,
                          qPos: usize, kPos: usize, allowed: usize, scores: usize, u0: i32, u1: i32): void {
  const group = nHeads / nKvHeads;
  const qRow = <usize>(nHeads * hd) << 2, kvRow = <usize>(nKvHeads * hd) << 2;
  const usePos = qPos != 0 && kPos != 0;
  const kPosp = usePos ? kPos : 0;
  const hd4 = hd & ~3;
  const negInf = f32x4.splat(-Infinity);
  for (let u = u0; u < u1; u++) {
    const i = u / nHeads, h = u % nHeads;
    const kvh = h / group;
    const qp = q + <usize>i * qRow + (<usize>(h * hd) << 2);
    const kBase = k + (<usize>(kvh * hd) << 2), vBase = v + (<usize>(kvh * hd) << 2);
    const qPosI = usePos ? load<i32>(qPos + (<usize>i << 2)) : 0;

    // 1. scores[j] = scale · q·k_j, or −Inf where key j is invisible.
    let j = 0;
    for (; j + 4 <= Tk; j += 4) {
      const vis0 = visible(i, j, Tk, qPosI, kPosp, allowed), vis1 = visible(i, j + 1, Tk, qPosI, kPosp, allowed);
      const vis2 = visible(i, j + 2, Tk, qPosI, kPosp, allowed), vis3 = visible(i, j + 3, Tk, qPosI, kPosp, allowed);
      const sp = scores + (<usize>j << 2);
      if (!(vis0 || vis1 || vis2 || vis3)) { v128.store(sp, negInf); continue; }
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
      // transpose-add: [Σa0, Σa1, Σa2, Σa3]
      const s01 = f32x4.add(v128.shuffle<f32>(a0, a1, 0, 4, 1, 5), v128.shuffle<f32>(a0, a1, 2, 6, 3, 7));
      const s23 = f32x4.add(v128.shuffle<f32>(a2, a3, 0, 4, 1, 5), v128.shuffle<f32>(a2, a3, 2, 6, 3, 7));
      let s = f32x4.add(v128.shuffle<f32>(s01, s23, 0, 1, 4, 5), v128.shuffle<f32>(s01, s23, 2, 3, 6, 7));
      if (hd4 < hd) {
        let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
        for (let d = hd4; d < hd; d++) {
          const o = <usize>d << 2;
          const qd = load<f32>(qp + o);
          t0 += qd * load<f32>(k0 + o); t1 += qd * load<f32>(k1 + o);
          t2 += qd * load<f32>(k2 + o); t3 += qd * load<f32>(k3 + o);
        }
        s = f32x4.add(s, f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(t0), 1, t1), 2, t2), 3, t3));
      }
      s = f32x4.mul(s, f32x4.splat(scale));
      if (!(vis0 && vis1 && vis2 && vis3)) {
        if (!vis0) s = f32x4.replace_lane(s, 0, -Infinity);
        if (!vis1) s = f32x4.replace_lane(s, 1, -Infinity);
        if (!vis2) s = f32x4.replace_lane(s, 2, -Infinity);
        if (!vis3) s = f32x4.replace_lane(s, 3, -Infinity);
      }
      v128.store(sp, s);
    }
    for (; j < Tk; j++) {
      const sj: f32 = visible(i, j, Tk, qPosI, kPosp, allowed) ? dot(qp, kBase + <usize>j * kvRow, hd) * scale : -Infinity;
      store<f32>(scores + (<usize>j << 2), sj);
    }

    // 2. max (NaN never wins: pmax keeps the running value), then p_j = exp(s_j − max) and their sum.
    let mv = negInf;
    j = 0;
    for (; j + 4 <= Tk; j += 4) mv = f32x4.pmax(mv, v128.load(scores + (<usize>j << 2)));
    let max = f32x4.extract_lane(mv, 0);
    const m1 = f32x4.extract_lane(mv, 1), m2 = f32x4.extract_lane(mv, 2), m3 = f32x4.extract_lane(mv, 3);
    if (m1 > max) max = m1;
    if (m2 > max) max = m2;
    if (m3 > max) max = m3;
    for (; j < Tk; j++) { const x = load<f32>(scores + (<usize>j << 2)); if (x > max) max = x; }
    const op = out + <usize>i * qRow + (<usize>(h * hd) << 2);
    if (max == -Infinity) { // no visible key: zeros by contract
      for (let d = 0; d < hd; d++) store<f32>(op + (<usize>d << 2), 0);
      continue;
    }
    const maxv = f32x4.splat(max);
    let sumv = f32x4.splat(0);
    j = 0;
    for (; j + 4 <= Tk; j += 4) {
      const sp = scores + (<usize>j << 2);
      const p = exp4(f32x4.sub(v128.load(sp), maxv));
      v128.store(sp, p);
      sumv = f32x4.add(sumv, p);
    }
    let sum = (f32x4.extract_lane(sumv, 0) + f32x4.extract_lane(sumv, 1)) + (f32x4.extract_lane(sumv, 2) + f32x4.extract_lane(sumv, 3));
    for (; j < Tk; j++) {
      const sp = scores + (<usize>j << 2);
      const p = f32x4.extract_lane(exp4(f32x4.splat(load<f32>(sp) - max)), 0);
      store<f32>(sp, p);
      sum += p;
    }

    // 3. out = Σ_j p_j v_j / sum.
    const sumSplat = f32x4.splat(sum);
    let d = 0;
    for (; d + 32 <= hd; d += 32) {
      let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
      let vp = vBase + (<usize>d << 2);
      for (let jj = 0; jj < Tk; jj++, vp += kvRow) {
        const pj = load<f32>(scores + (<usize>jj << 2));
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
      v128.store(o, f32x4.div(c0, sumSplat)); v128.store(o, f32x4.div(c1, sumSplat), 16);
      v128.store(o, f32x4.div(c2, sumSplat), 32); v128.store(o, f32x4.div(c3, sumSplat), 48);
      v128.store(o, f32x4.div(c4, sumSplat), 64); v128.store(o, f32x4.div(c5, sumSplat), 80);
      v128.store(o, f32x4.div(c6, sumSplat), 96); v128.store(o, f32x4.div(c7, sumSplat), 112);
    }
    for (; d + 4 <= hd; d += 4) {
      let c0 = f32x4.splat(0);
      let vp = vBase + (<usize>d << 2);
      for (let jj = 0; jj < Tk; jj++, vp += kvRow) {
        const pj = load<f32>(scores + (<usize>jj << 2));
        if (pj == 0) continue;
        c0 = f32x4.add(c0, f32x4.mul(f32x4.splat(pj), v128.load(vp)));
      }
      v128.store(op + (<usize>d << 2), f32x4.div(c0, sumSplat));
    }
    for (; d < hd; d++) {
      let c: f32 = 0;
      let vp = vBase + (<usize>d << 2);
      for (let jj = 0; jj < Tk; jj++, vp += kvRow) {
        const pj = load<f32>(scores + (<usize>jj << 2));
        if (pj == 0) continue;
        c += pj * load<f32>(vp);
      }
      store<f32>(op + (<usize>d << 2), c / sum);
    }
  }
}
