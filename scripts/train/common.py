"""Pieces the three trainers share: data, the decoder parts upstream's families have in common,
safetensors I/O, ponder's initial-state PRNG, the training loop and the evaluations.

Run by hand with Debian's torch (/usr/bin/python3); never by CI. See README.md beside this file.
"""
import json
import math
import os
import signal
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# data (written by prepare-data.ts)


class Data:
    """The token streams and held-out sets of one prepared data folder."""

    def __init__(self, folder):
        self.folder = folder
        read = lambda name: np.fromfile(os.path.join(folder, name), dtype='<u2').astype(np.int64)
        self.prose_train = read('prose-train.u16')
        self.prose_val = read('prose-val.u16')
        self.synth_train = read('synth-train.u16')
        with open(os.path.join(folder, 'mix-eval.json')) as f:
            self.mix_eval = json.load(f)  # models/eval/heldout.txt in windows, with the synthetic queries
        with open(os.path.join(folder, 'token-bytes.json')) as f:
            self.token_bytes = torch.tensor(json.load(f), dtype=torch.float64)
        with open(os.path.join(folder, 'meta.json')) as f:
            self.meta = json.load(f)
        with open(os.path.join(folder, 'tokenizer.json')) as f:
            self.tokenizer_vocab = json.load(f)['model']['vocab']

    def batch(self, rng, batch, ctx, synth_fraction):
        """[batch, ctx + 1] windows at random offsets, each row synthetic with probability synth_fraction;
        and which rows are synthetic [batch] (bool)."""
        rows, synthetic = [], []
        for _ in range(batch):
            synthetic.append(rng.random() < synth_fraction)
            stream = self.synth_train if synthetic[-1] else self.prose_train
            start = int(rng.integers(0, len(stream) - ctx - 1))
            rows.append(stream[start:start + ctx + 1])
        return torch.from_numpy(np.stack(rows)), torch.tensor(synthetic)

    def target_weights(self, batch, synthetic, random_digit_weight, answer_weight):
        """Loss weight per target [B, ctx]: 1, except in synthetic rows, where a digit right after ':' is an
        answer (answer_weight) and every other digit is a random start digit or operand (random_digit_weight:
        its loss cannot go below ln 10, and at 0 its gradient noise no longer drowns the answers' signal)."""
        vocab = self.tokenizer_vocab
        digits = torch.tensor([vocab['\u0120' + str(i)] for i in range(10)])
        prev, targets = batch[:, :-1], batch[:, 1:]
        is_digit = torch.isin(targets, digits)
        answer = is_digit & (prev == vocab[':'])
        w = torch.ones(targets.shape, dtype=torch.float32)
        rows = synthetic[:, None].expand_as(w)
        w[rows & is_digit & ~answer] = random_digit_weight
        w[rows & answer] = answer_weight
        return w

    def val_windows(self, ctx, count):
        """The first count non-overlapping windows [count, ctx + 1] of the held-out prose."""
        n = min(count, (len(self.prose_val) - 1) // ctx)
        return torch.stack([torch.from_numpy(self.prose_val[i * ctx:i * ctx + ctx + 1]) for i in range(n)])


# ---------------------------------------------------------------------------------------------
# decoder parts


def wide(x):
    """x in at least float32 (the fixture runs the models in float64 as the exact reference)."""
    return x if x.dtype == torch.float64 else x.float()


class RMSNorm(nn.Module):
    """Llama RMSNorm: w · x / sqrt(mean(x²) + eps), computed in float32 (all three families)."""

    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = wide(x)
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rope_inv_freq(head_dim, theta):
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


def rope_rotate_half(x, positions, theta):
    """NeoX / HF-Llama RoPE (pairs i, i + d/2) on x [B, H, S, d] at positions [B, S] (Ouro, MoR)."""
    d = x.shape[-1]
    freqs = positions[:, None, :, None].float() * rope_inv_freq(d, theta)  # [B, 1, S, d/2]
    emb = torch.cat([freqs, freqs], dim=-1)
    cos, sin = emb.cos(), emb.sin()
    x1, x2 = x[..., :d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def rope_interleaved_table(head_dim, theta, length):
    """Huginn's freqs_cis [1, length, 1, d/2, 2] = (cos, sin) of p · θ^(−2i/d), float32."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    f = torch.outer(torch.arange(length, dtype=torch.float32), inv)
    return torch.stack([f.cos(), f.sin()], dim=-1)[None, :, None]


def rope_interleaved(x, table):
    """Huginn's RoPE on x [B, S, H, d] with pairs (2i, 2i + 1); table [1, S, 1, d/2, 2]."""
    xs = wide(x).reshape(*x.shape[:-1], -1, 2)
    cos, sin = table[..., 0], table[..., 1]
    out = torch.stack([xs[..., 0] * cos - xs[..., 1] * sin, xs[..., 1] * cos + xs[..., 0] * sin], dim=-1)
    return out.flatten(3).type_as(x)


def causal_attention(q, k, v, allowed=None):
    """softmax(q kᵀ / √d + mask) v on [B, H, S, d]; `allowed` [B, 1, S, S] (bool) or causal when None."""
    S = q.shape[-2]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if allowed is None:
        allowed = torch.ones(S, S, dtype=torch.bool).tril()
    scores = scores.masked_fill(~allowed, float('-inf'))
    return torch.softmax(wide(scores), dim=-1).to(q.dtype) @ v


class GatedMLP(nn.Module):
    """Llama SwiGLU: down(silu(gate(x)) · up(x)) with HF names (Ouro, MoR)."""

    def __init__(self, hidden, inter):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaAttention(nn.Module):
    """q/k/v/o projections without bias, GQA, rotate-half RoPE (Ouro, MoR)."""

    def __init__(self, hidden, heads, kv_heads, head_dim, theta):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.theta = heads, kv_heads, head_dim, theta
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)

    def forward(self, x, positions, allowed=None):
        B, S, _ = x.shape
        q = self.q_proj(x).view(B, S, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = rope_rotate_half(q, positions, self.theta), rope_rotate_half(k, positions, self.theta)
        r = self.heads // self.kv_heads
        if r > 1:
            k, v = k.repeat_interleave(r, dim=1), v.repeat_interleave(r, dim=1)
        y = causal_attention(q, k, v, allowed)
        return self.o_proj(y.transpose(1, 2).reshape(B, S, -1))


def init_normal(module, std):
    for p in module.parameters():
        if p.dim() >= 2:
            nn.init.normal_(p, 0.0, std)


# ---------------------------------------------------------------------------------------------
# safetensors


DTYPES = {torch.float32: 'F32', torch.bfloat16: 'BF16', torch.int32: 'I32'}


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: tensor} written in name order; bf16 kept bf16."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {'dtype': DTYPES[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header['__metadata__'] = metadata
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * ((8 - len(text) % 8) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == '__metadata__':
            continue
        a, b = h['data_offsets']
        if h['dtype'] == 'BF16':
            t = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.int16).copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(data[a:b], dtype={'F32': np.float32, 'I32': np.int32}[h['dtype']]).copy())
        out[name] = t.reshape(h['shape'])
    return out


# ---------------------------------------------------------------------------------------------
# ponder's initial-state stream (src/generate/prng.ts, src/models/huginn.ts seededInitialStates)


class PonderPrng:
    """xoshiro128** seeded by splitmix32, Box–Muller normals: the stream ponder draws Huginn's s₀ from."""

    def __init__(self, seed):
        x = seed & 0xFFFFFFFF
        words = []
        for _ in range(4):
            x = (x + 0x9E3779B9) & 0xFFFFFFFF
            z = x
            z = ((z ^ (z >> 16)) * 0x85EBCA6B) & 0xFFFFFFFF
            z = ((z ^ (z >> 13)) * 0xC2B2AE35) & 0xFFFFFFFF
            words.append((z ^ (z >> 16)) & 0xFFFFFFFF)
        self.s = words

    def next_uint32(self):
        s0, s1, s2, s3 = self.s
        rotl = lambda v, k: ((v << k) | (v >> (32 - k))) & 0xFFFFFFFF
        result = (rotl((s1 * 5) & 0xFFFFFFFF, 7) * 9) & 0xFFFFFFFF
        t = (s1 << 9) & 0xFFFFFFFF
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 11)
        self.s = [s0, s1, s2, s3]
        return result

    def next_float(self):
        return self.next_uint32() * 2.0 ** -32

    def next_normal(self):
        u = self.next_float()
        while u == 0:
            u = self.next_float()
        return math.sqrt(-2 * math.log(u)) * math.cos(2 * math.pi * self.next_float())


def ponder_initial_state(seed, S, E, sigma, embed_scale):
    """seededInitialStates(seed).next(1, S, E, σ, √E): truncated (±3) normals · σ · √E in float32."""
    rng = PonderPrng(seed)
    out = np.zeros(S * E, dtype=np.float32)
    if sigma == 0:
        return torch.from_numpy(out).view(1, S, E)
    f32 = np.float32
    for i in range(S * E):
        z = rng.next_normal()
        while abs(z) > 3:
            z = rng.next_normal()
        out[i] = f32(f32(z * sigma) * f32(embed_scale))
    return torch.from_numpy(out).view(1, S, E)


# ---------------------------------------------------------------------------------------------
# training loop


def lr_at(step, steps, peak, warmup, floor=0.1):
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def log(run_dir, record):
    line = json.dumps(record)
    print(line, flush=True)
    with open(os.path.join(run_dir, 'log.jsonl'), 'a') as f:
        f.write(line + '\n')


def train(family, model, data, args):
    """AdamW with warmup + cosine; `family.loss(model, batch, weights, step, rng)` → (loss, stats). Resumable."""
    run_dir = args.run_dir
    os.makedirs(run_dir, exist_ok=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': args.weight_decay}, {'params': no_decay, 'weight_decay': 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    start, elapsed = 0, 0.0
    ckpt = os.path.join(run_dir, 'checkpoint.pt')
    if os.path.exists(ckpt):
        state = torch.load(ckpt)
        model.load_state_dict(state['model'])
        opt.load_state_dict(state['opt'])
        start, elapsed = state['step'], state['elapsed']
        print(f'resumed at step {start}', flush=True)
    # the batch stream depends only on (seed, step): a resumed run sees the batches it would have seen
    # SIGTERM (kill PID) ends the run after the current step with a checkpoint, so a run can be
    # stopped and resumed, also with another --steps (the cosine schedule then follows the new length)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))

    def save(step):
        torch.save({'model': model.state_dict(), 'opt': opt.state_dict(), 'step': step, 'elapsed': time.time() - t0}, ckpt + '.tmp')
        os.replace(ckpt + '.tmp', ckpt)

    tokens_per_step = args.batch * args.ctx
    t0 = time.time() - elapsed
    window_t, window_tokens = time.time(), 0
    for step in range(start, args.steps):
        rng = np.random.default_rng([args.seed, step])
        batch, synthetic = data.batch(rng, args.batch, args.ctx, args.synth_fraction)
        weights = data.target_weights(batch, synthetic, args.random_digit_weight, args.answer_weight)
        lr = lr_at(step, args.steps, args.lr, args.warmup)
        for g in opt.param_groups:
            g['lr'] = lr
        model.train()
        loss, stats = family.loss(model, batch, weights, step, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        family.after_step(model, step)
        window_tokens += tokens_per_step
        if (step + 1) % args.log_every == 0 or step == start:
            now = time.time()
            log(run_dir, {'step': step + 1, 'loss': round(loss.item(), 4), 'lr': round(lr, 6), 'gnorm': round(float(gnorm), 3),
                          'tok_s': round(window_tokens / max(now - window_t, 1e-9)), 'elapsed_s': round(now - t0), **stats})
            window_t, window_tokens = now, 0
        if step + 1 == args.stop_at:
            stop.append(True)
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps or stop:
            save(step + 1)
        if stop:
            print(f'stopped after step {step + 1} (checkpoint saved)', flush=True)
            break
    return time.time() - t0


def add_train_args(p):
    p.add_argument('--data', default='/work/big/sotu-data')
    p.add_argument('--run-dir', required=True)
    p.add_argument('--steps', type=int, default=3000)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--ctx', type=int, default=256)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--warmup', type=int, default=200)
    p.add_argument('--weight-decay', type=float, default=0.1)
    p.add_argument('--clip', type=float, default=1.0)
    p.add_argument('--synth-fraction', type=float, default=0.3)
    p.add_argument('--random-digit-weight', type=float, default=1.0, help="loss weight of the synthetic lines' random digits (start, operands)")
    p.add_argument('--answer-weight', type=float, default=1.0, help="loss weight of the synthetic lines' answers")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--log-every', type=int, default=25)
    p.add_argument('--save-every', type=int, default=200)
    p.add_argument('--init-from', default=None, help="a checkpoint.pt whose model weights a new run starts from (its optimizer and step are not taken)")
    p.add_argument('--stop-at', type=int, default=None, help='end after this step with a checkpoint (to replay a run that was stopped and resumed)')


# ---------------------------------------------------------------------------------------------
# evaluation


def weighted_mean(values, weights):
    """Σ w·x / Σ w over the targets (values [B, S], weights [B, S])."""
    return (values * weights).sum() / weights.sum()


def cross_entropy_rows(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction='none').view(targets.shape)


def bits_per_byte(data, logits_fn, ctx, windows, batch=8):
    """Held-out bits/byte of the prose: Σ CE / ln 2 / Σ bytes of the predicted tokens."""
    val = data.val_windows(ctx, windows)
    nats, nbytes = 0.0, 0.0
    for i in range(0, len(val), batch):
        w = val[i:i + batch]
        logits = logits_fn(w[:, :-1])
        nats += cross_entropy_rows(logits, w[:, 1:]).double().sum().item()
        nbytes += data.token_bytes[w[:, 1:]].sum().item()
    return nats / math.log(2) / nbytes


def synthetic_windows(data):
    ev = data.synth_eval
    ids = torch.tensor([w['ids'] for w in ev['windows']], dtype=torch.int64)
    queries = [(wi, q['pos'], q['answer'], q['hops']) for wi, w in enumerate(ev['windows']) for q in w['queries']]
    return ids, queries


def per_hop(queries, values):
    """{hops: mean of values over the queries with that hop count}"""
    out = {}
    for h in sorted({q[3] for q in queries}):
        xs = [v for q, v in zip(queries, values) if q[3] == h]
        out[h] = round(float(np.mean(xs)), 4)
    return out
