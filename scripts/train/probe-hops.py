"""From-scratch probe of the hop task (issue 14, part 1c): does a small Huginn learn it, and does the
depth it needs rise with the hop count k?

  nice -n 19 /usr/bin/python3 scripts/train/probe-hops.py --run-dir /work/big/hops-probe --minutes 40

Synthetic lines only, generated on the fly (no prose, no prepare-data step):

  " 3 b a c: 7.\\n"   start digit v, then k op letters, each applied in order, v ← OPS[op][v];
                      the answer after ":" is the final v

OPS is a few fixed digit permutations (seed 3, drawn here; `--ops` of them, letters a, b, c, …),
learned into the weights — 10 entries per op, never shown in the text. Position j's running value
depends on position j − 1's, so a causal looped model needs about one recurrence per op.
Only the answers carry loss (the start digit and the ops are random; the format tokens are trivial).

k follows a curriculum: k_max starts at 1 and grows by one whenever the training answers at k_max
reach --advance accuracy (a moving average over the last steps); k is uniform in 1..k_max, with
half of the lines at k_max.

--task chase (part 1e) generates in-context chains instead, whose hops are written in the line and
so cannot be learned into the weights or composed ahead of the query (make_chase_line):

  " d c, c a, a b, b 7, e f, f 2: d 0, g 3.\n"   x y: x = y + 1; x 7: x = 7 (mod 10); two queries

Every --eval-every steps: answer accuracy per k on fixed held-out lines (seed 4) at every fixed
depth 1..--eval-depth, logged to log.jsonl. The checkpoint has train.py's layout ({'model', 'opt',
'step', 'elapsed'}), so train.py --init-from can continue it on the prose mix (its RoPE table is
built for --block-size, not --ctx).
"""
import argparse
import json
import math
import os
import signal
import sys
import time
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import huginn  # noqa: E402
import ouro  # noqa: E402

LETTERS = 'abcdefgh'


def vocab_ids(tokenizer_json):
    with open(tokenizer_json) as f:
        vocab = json.load(f)['model']['vocab']
    one = lambda s: vocab[s.replace(' ', '\u0120').replace('\n', '\u010a')]
    return {'digit': [one(' ' + str(i)) for i in range(10)], 'op': [one(' ' + c) for c in LETTERS],
            'colon': one(':'), 'period': one('.'), 'comma': one(','), 'newline': one('\n'), 'vocab': len(vocab)}


def op_tables(n_ops, seed=3):
    rng = np.random.default_rng(seed)
    return [rng.permutation(10) for _ in range(n_ops)]


def make_line(rng, k, ops, ids):
    """(token ids, [(offset of an answer token in them, answer digit, k)]): the ops task"""
    v = int(rng.integers(10))
    out = [ids['digit'][v]]
    for _ in range(k):
        o = int(rng.integers(len(ops)))
        v = int(ops[o][v])
        out.append(ids['op'][o])
    out.append(ids['colon'])
    pos = len(out)
    out += [ids['digit'][v], ids['period'], ids['newline']]
    return out, [(pos, v, k)]


def make_chase_line(rng, k, ops, ids):
    """The chase task: " d c, c a, a b, b 7, e f, f 2: d 0, g 3." — all 8 letters defined once, in
    chains; "x y" means x = y + 1 and "x 7" means x = 7 (mod 10). Each chain is written head first, so
    a definition's right-hand letter is always defined later in the line: no definition can be
    resolved where it stands, and the value of a letter k definitions from its chain's digit needs k
    lookups in sequence at the query itself. The queried chain (its head asked first) has k
    definitions; the other 8 − k letters form one or two more chains; the second query asks another
    letter at most k definitions from its digit (its own k). Every answer is the digit after a queried letter."""
    letters = [int(x) for x in rng.permutation(len(LETTERS))]
    rest = letters[k:]
    cut = int(rng.integers(1, len(rest))) if len(rest) >= 2 and rng.random() < 0.5 else len(rest)
    chains = [letters[:k], *[c for c in (rest[:cut], rest[cut:]) if c]]
    roots = [int(x) for x in rng.choice(10, len(chains), replace=False)]
    value, depth = {}, {}
    for chain, root in zip(chains, roots):
        for i, x in enumerate(chain):
            depth[x] = len(chain) - i
            value[x] = (root + len(chain) - 1 - i) % 10
    left = [list(c) for c in chains]
    out = []
    while any(left):
        n = np.array([len(c) for c in left], dtype=float)
        c = int(rng.choice(len(left), p=n / n.sum()))
        x = left[c].pop(0)
        rhs = ids['op'][left[c][0]] if left[c] else ids['digit'][roots[c]]  # left[c]: chains[c] after x
        out += [ids['op'][x], rhs, ids['comma']]
    out[-1] = ids['colon']
    answers = []
    easier = [x for x in letters if x != letters[0] and depth[x] <= k]
    second = easier[int(rng.integers(len(easier)))]
    for qi, x in enumerate((letters[0], second)):
        out.append(ids['op'][x])
        answers.append((len(out), value[x], depth[x]))
        out += [ids['digit'][value[x]], ids['comma'] if qi == 0 else ids['period']]
    out.append(ids['newline'])
    return out, answers


LINES = {'ops': make_line, 'chase': make_chase_line}  # --task


def make_rows(rng, batch, ctx, ops, ids, k_of_line, line=make_line):
    """[batch, ctx + 1] rows of whole lines (a partial line at the end), and the answers in them as
    (row, target index, answer id, k); target index t means the token at t + 1 is predicted from t."""
    rows, answers = [], []
    for r in range(batch):
        row = []
        while len(row) < ctx + 1:
            k = k_of_line(rng)
            tokens, line_answers = line(rng, k, ops, ids)
            for pos, v, kk in line_answers:
                if len(row) + pos < ctx + 1:
                    answers.append((r, len(row) + pos - 1, ids['digit'][v], kk))
            row += tokens
        rows.append(row[:ctx + 1])
    return torch.tensor(rows, dtype=torch.int64), answers


def fixed_depth_logits(family, model, ids, depth):
    """[logits [B, S, V] after 1, 2, … steps]: Huginn's recurrences 1..depth (torch's random s₀), Ouro's loops."""
    with torch.no_grad():
        if family == 'huginn':
            return model(ids, depth, trajectory=True)
        hs, _ = model.loops(ids)
        return [model.lm_head(h).float() for h in hs]


def accuracy_per_k(family, model, rows, answers, depth):
    """{depth: {k: accuracy}} at every fixed depth."""
    out = {}
    traj = fixed_depth_logits(family, model, rows[:, :-1], depth)
    r = torch.tensor([a[0] for a in answers])
    t = torch.tensor([a[1] for a in answers])
    y = torch.tensor([a[2] for a in answers])
    ks = np.array([a[3] for a in answers])
    for d, logits in enumerate(traj, start=1):
        correct = (logits[r, t].argmax(-1) == y).numpy()
        out[d] = {int(k): round(float(correct[ks == k].mean()), 3) for k in sorted(set(ks))}
    return out


def byte_decoder(tokenizer_json):
    """id → bytes of the byte-level BPE vocabulary (GPT-2's printable stand-ins for the 256 bytes)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    stand_in, n = {}, 0
    for b in range(256):
        if b in printable:
            stand_in[chr(b)] = b
        else:
            stand_in[chr(256 + n)] = b
            n += 1
    with open(tokenizer_json) as f:
        vocab = json.load(f)['model']['vocab']
    return {i: bytes(stand_in[c] for c in s) for s, i in vocab.items()}


def write_eval(args, ids, ops, out_dir, windows=28, seed=5):
    """The held-out set in the form the model trains on: `windows` prose windows (held-out documents,
    prose-val.u16, evenly spaced) interleaved with as many windows of hop lines (seed 5, k uniform in
    1..--k-max), each 256 predicted positions and a fresh sequence. Written as heldout.ids.json (the
    windows and the answer queries, spec/eval.md's format), heldout.txt (the windows' text, a blank
    line between windows) and heldout.tasks.tsv (the lines of the line windows as K, prompt, answer)."""
    os.makedirs(out_dir, exist_ok=True)
    ctx = args.ctx
    prose = np.fromfile(os.path.join(args.data, 'prose-val.u16'), dtype='<u2').astype(np.int64)
    step = (len(prose) - ctx - 1) // windows
    rows, answers = make_rows(np.random.default_rng(seed), windows, ctx, ops, ids, lambda rng: 1 + int(rng.integers(args.k_max)), LINES[args.task])
    by_row = {}
    for r, t, a, k in answers:
        by_row.setdefault(r, []).append({'pos': t, 'answer': a, 'k': k})
    out, tasks = [], []
    for i in range(windows):
        out.append({'ids': [int(x) for x in prose[i * step:i * step + ctx + 1]], 'queries': []})
        out.append({'ids': rows[i].tolist(), 'queries': by_row.get(i, [])})
    decode = byte_decoder(args.tokenizer)
    text = lambda seq: b''.join(decode[x] for x in seq).decode('utf-8', errors='replace')
    for w in out:
        for q in w['queries']:
            start = q['pos']
            while start > 0 and w['ids'][start - 1] != ids['newline']:
                start -= 1
            tasks.append(f"{q['k']}\t{text(w['ids'][start:q['pos'] + 1])}\t{text(w['ids'][q['pos'] + 1:q['pos'] + 3])}")
    with open(os.path.join(out_dir, 'heldout.ids.json'), 'w') as f:
        json.dump({'window': ctx, 'windows': out}, f, separators=(',', ':'))
    with open(os.path.join(out_dir, 'heldout.txt'), 'w') as f:
        f.write('\n\n'.join(text(w['ids']) for w in out) + '\n')
    with open(os.path.join(out_dir, 'heldout.tasks.tsv'), 'w') as f:
        f.write('\n'.join(tasks) + '\n')
    print(f'{out_dir}: {len(out)} windows of {ctx + 1} ids, {len(tasks)} queries', flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--run-dir', required=True)
    p.add_argument('--family', choices=('huginn', 'ouro'), default='huginn')
    p.add_argument('--layers', type=int, default=2, help='Ouro: decoder layers')
    p.add_argument('--loops', type=int, default=4, help='Ouro: total_ut_steps')
    p.add_argument('--entropy-beta', type=float, default=0.5, help="Ouro: stage I's entropy weight")
    p.add_argument('--gate-steps', type=int, default=0, help="Ouro: the last steps train the exit gate alone (stage II)")
    p.add_argument('--gate-k', type=float, default=50.0)
    p.add_argument('--gate-gamma', type=float, default=0.005)
    p.add_argument('--tokenizer', default='/work/big/sotu-data2/tokenizer.json')
    p.add_argument('--task', choices=tuple(LINES), default='ops', help="ops: the digit-permutation lines; chase: in-context chains (make_chase_line)")
    p.add_argument('--ops', type=int, default=3)
    p.add_argument('--k-max', type=int, default=6)
    p.add_argument('--advance', type=float, default=0.8)
    p.add_argument('--width', type=int, default=128)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--intermediate', type=int, default=256)
    p.add_argument('--prelude', type=int, default=1)
    p.add_argument('--core', type=int, default=1)
    p.add_argument('--coda', type=int, default=1)
    p.add_argument('--mean-recurrence', type=int, default=8)
    p.add_argument('--backprop-depth', type=int, default=4)
    p.add_argument('--per-token-depth', type=int, default=0, metavar='D',
                   help='every token its own depth, uniform in 1..D, run as per-token exits run at inference: Huginn with the '
                        'lookup `latest` (Huginn.per_token_forward), Ouro in skip mode with copy-forward (ouro.per_token_forward; D = '
                        '--loops; stage II still trains the gate alone); backprop through every step. 0: one depth for all tokens')
    p.add_argument('--ctx', type=int, default=64)
    p.add_argument('--block-size', type=int, default=256, help='the RoPE table length (config block_size)')
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--warmup', type=int, default=50)
    p.add_argument('--steps', type=int, default=4000, help='the cosine schedule length')
    p.add_argument('--minutes', type=float, default=40, help='stop (with a checkpoint) after this much training time')
    p.add_argument('--eval-every', type=int, default=100)
    p.add_argument('--eval-depth', type=int, default=12)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--init-from', default=None)
    p.add_argument('--data', default='/work/big/sotu-data2', help='a prepare-data.ts folder: the prose rows come from its prose-train.u16')
    p.add_argument('--prose-fraction', type=float, default=0.0, help='share of rows that are prose windows (loss on every token)')
    p.add_argument('--line-weight', type=float, default=0.0,
                   help="weight of the mean loss over the synthetic lines' other tokens (start digit, ops, ':', '.', newline), "
                        "added to the answers' mean; 0 = answers only (the probe), 1 = a model that also writes the lines' format")
    p.add_argument('--write-eval', metavar='DIR', help='write the held-out set (prose and line windows) to DIR and exit')
    args = p.parse_args()
    if args.family == 'ouro' and args.per_token_depth > args.loops:
        p.error(f'--per-token-depth {args.per_token_depth} is more than --loops {args.loops}: an Ouro token runs at most total_ut_steps loops')
    if args.write_eval:
        write_eval(args, vocab_ids(args.tokenizer), op_tables(args.ops), args.write_eval)
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.run_dir, exist_ok=True)
    ids = vocab_ids(args.tokenizer)
    ops = op_tables(args.ops)
    cfg_args = SimpleNamespace(width=args.width, heads=args.heads, prelude=args.prelude, core=args.core, coda=args.coda,
                               mean_recurrence=args.mean_recurrence, backprop_depth=args.backprop_depth,
                               ctx=args.block_size, intermediate=args.intermediate)
    config_path = os.path.join(args.run_dir, 'config.json')
    cfg_args.layers, cfg_args.loops = args.layers, args.loops
    if os.path.exists(config_path):
        config = json.load(open(config_path))
    else:
        config = (huginn if args.family == 'huginn' else ouro).default_config(ids['vocab'], cfg_args)
        json.dump(config, open(config_path, 'w'), indent=2)
    json.dump({**vars(args), 'argv': sys.argv, 'ops_tables': [''.join(map(str, o)) for o in ops]},
              open(os.path.join(args.run_dir, 'args.json'), 'w'), indent=2)
    with open(os.path.join(args.run_dir, 'commands.jsonl'), 'a') as f:
        f.write(json.dumps({'argv': sys.argv, 'started': time.strftime('%Y-%m-%dT%H:%M:%S')}) + '\n')
    model = huginn.Huginn(config) if args.family == 'huginn' else ouro.Ouro(config)
    ouro_family = ouro.Family(config, args) if args.family == 'ouro' else None
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': no_decay, 'weight_decay': 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    ckpt = os.path.join(args.run_dir, 'checkpoint.pt')
    start, elapsed, k_max = 0, 0.0, 1
    if os.path.exists(ckpt):
        state = torch.load(ckpt)
        model.load_state_dict(state['model'])
        opt.load_state_dict(state['opt'])
        start, elapsed, k_max = state['step'], state['elapsed'], state.get('k_max', 1)
        print(f'resumed at step {start}, k_max {k_max}', flush=True)
    elif args.init_from:
        model.load_state_dict(torch.load(args.init_from)['model'])
        print(f'initialised from {args.init_from}', flush=True)
    prose = np.fromfile(os.path.join(args.data, 'prose-train.u16'), dtype='<u2').astype(np.int64) if args.prose_fraction > 0 else None
    print(f'{sum(q.numel() for q in model.parameters()):,} parameters; ops {[list(o) for o in ops]}', flush=True)
    eval_rows, eval_answers = make_rows(np.random.default_rng(4), 6144 // args.ctx, args.ctx, ops, ids,
                                        lambda rng: 1 + int(rng.integers(args.k_max)), LINES[args.task])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    t0 = time.time() - elapsed
    recent = []  # (k, correct) of the training answers at the last steps
    log_f = open(os.path.join(args.run_dir, 'log.jsonl'), 'a')

    def log(rec):
        line = json.dumps(rec)
        print(line, flush=True)
        log_f.write(line + '\n')
        log_f.flush()

    def save(step):
        torch.save({'model': model.state_dict(), 'opt': opt.state_dict(), 'step': step, 'elapsed': time.time() - t0,
                    'k_max': k_max}, ckpt + '.tmp')
        os.replace(ckpt + '.tmp', ckpt)

    window_t = time.time()
    for step in range(start, args.steps):
        rng = np.random.default_rng([args.seed, step])
        km = k_max
        k_of_line = lambda g: km if g.random() < 0.5 else 1 + int(g.integers(km))
        n_prose = min(int(rng.binomial(args.batch, args.prose_fraction)), args.batch - 1) if args.prose_fraction > 0 else 0
        rows, answers = make_rows(rng, args.batch - n_prose, args.ctx, ops, ids, k_of_line, LINES[args.task])
        if n_prose:
            starts = rng.integers(0, len(prose) - args.ctx - 1, n_prose)
            rows = torch.cat([rows, torch.from_numpy(np.stack([prose[a:a + args.ctx + 1] for a in starts]))])
        lr = common.lr_at(step, args.steps, args.lr, args.warmup)
        for g in opt.param_groups:
            g['lr'] = lr
        model.train()
        r = torch.tensor([a[0] for a in answers])
        t = torch.tensor([a[1] for a in answers])
        y = torch.tensor([a[2] for a in answers])
        # the objective, one weight per target for both families: the answers' mean + --line-weight × the
        # other synthetic tokens' mean + the prose tokens' mean
        w = torch.zeros(rows.shape[0], args.ctx)
        if args.line_weight > 0:
            n_syn = args.batch - n_prose
            w[:n_syn] = args.line_weight / (n_syn * args.ctx - len(answers))
        w[r, t] = 1.0 / len(answers)
        if n_prose:
            w[-n_prose:] = 1.0 / (n_prose * args.ctx)
        prose_loss, n, k = None, 0, 0
        stage2 = args.family == 'ouro' and step >= args.steps - args.gate_steps
        token_depth = None  # [rows, ctx]: each token's own depth (--per-token-depth; Ouro's stage II runs every loop)
        if args.per_token_depth and not stage2:
            token_depth = torch.from_numpy(rng.integers(1, args.per_token_depth + 1, size=tuple(rows[:, :-1].shape)))
        logits, la, stats = None, None, {}
        if args.family == 'huginn' and token_depth is not None:
            n, k = 0, args.per_token_depth
            logits = model.per_token_forward(rows[:, :-1], token_depth)
        elif args.family == 'huginn':
            n, k = huginn.sample_depth(rng, args.mean_recurrence, args.backprop_depth)
            logits = model.truncated_forward(rows[:, :-1], n, k)
        elif token_depth is not None:
            logits = ouro.per_token_forward(model, rows[:, :-1], token_depth)
        if logits is not None:
            ce = common.cross_entropy_rows(logits, rows[:, 1:])
            loss = (ce * w).sum()
            if n_prose:
                prose_loss = ce[-n_prose:].mean()
            if args.family == 'huginn':
                la = logits[r, t]  # Ouro's curriculum follows the eval at the last loop
        else:
            # upstream's stage I / II objective with these weights
            loss, stats = ouro_family.loss(model, rows, w, step, rng)
            loss = loss * w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if la is not None and n + k >= k_max + 2:  # only steps deep enough to reach k_max count for the curriculum
            correct = (la.argmax(-1) == y).tolist()
            # with a depth per token, only the answers whose own depth could reach k_max
            deep = [True] * len(answers) if token_depth is None else (token_depth[r, t] >= k_max + 2).tolist()
            recent += [(a[3], c) for a, c, ok in zip(answers, correct, deep) if ok]
            recent = recent[-4000:]
            at_max = [c for kk, c in recent if kk == k_max]
            if len(at_max) >= 400 and np.mean(at_max[-400:]) >= args.advance and k_max < args.k_max:
                k_max += 1
                recent = []
                log({'step': step + 1, 'k_max': k_max, 'elapsed_s': round(time.time() - t0)})
        if (step + 1) % 25 == 0:
            now = time.time()
            log({'step': step + 1, 'loss': round(loss.item(), 4), 'lr': round(lr, 6), 'gnorm': round(float(gnorm), 3),
                 'prose_loss': None if prose_loss is None else round(prose_loss.item(), 4), 'depth': n + k, 'k_max': k_max, **({} if args.family == 'huginn' else stats), 'tok_s': round(25 * args.batch * args.ctx / (now - window_t)),
                 'elapsed_s': round(now - t0)})
            window_t = now
        if (step + 1) % args.eval_every == 0:
            model.eval()
            acc = accuracy_per_k(args.family, model, eval_rows, eval_answers, args.eval_depth)
            last = acc[max(acc)]
            if args.family == 'ouro' and last.get(k_max, 0) >= args.advance and k_max < args.k_max:
                k_max += 1  # Ouro's curriculum follows the eval at the last loop
                log({'step': step + 1, 'k_max': k_max, 'elapsed_s': round(time.time() - t0)})
            log({'step': step + 1, 'eval': {d: acc[d] for d in (1, 2, 3, 4, 6, 8, 12) if d in acc}})
            save(step + 1)
            window_t = time.time()
        if (time.time() - t0) / 60 >= args.minutes or stop:
            save(step + 1)
            print(f"stopped after step {step + 1} ({(time.time() - t0) / 60:.2f} min, signal {bool(stop)}; checkpoint saved)", flush=True)
            break


if __name__ == '__main__':
    main()
