"""Huginn (recurrent depth, seal-rg/recurrent-pretraining raven_modeling_minimal.py) in torch, with
upstream's module and tensor names, its "takase" init, and its training recipe: the depth is drawn
per step from the "poisson-lognormal-filling" sampler and only the last mean_backprop_depth
iterations get gradients (truncated backprop).
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import RMSNorm, causal_attention, cross_entropy_rows, weighted_mean, ponder_initial_state, rope_interleaved, rope_interleaved_table

KL_THRESHOLDS = (1e-2, 1e-3)
LATENT_THRESHOLDS = (0.1, 0.05, 0.03, 0.02, 0.01)


class SandwichBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        E, I, H = c['n_embd'], c['intermediate_size'], c['n_heads']
        self.n_heads, self.head_dim = H, E // H
        self.norm_1 = RMSNorm(E, c['norm_eps'])
        self.attn = nn.Module()
        self.attn.Wqkv = nn.Linear(E, 3 * E, bias=False)
        self.attn.qk_bias = nn.Parameter(torch.zeros(2, 1, H, E // H))
        self.attn.proj = nn.Linear(E, E, bias=False)
        self.norm_2 = RMSNorm(E, c['norm_eps'])
        self.mlp = nn.Module()
        self.mlp.fc = nn.Linear(E, 2 * I, bias=False)
        self.mlp.proj = nn.Linear(I, E, bias=False)
        self.norm_3 = RMSNorm(E, c['norm_eps'])
        self.norm_4 = RMSNorm(E, c['norm_eps'])

    def qkv(self, x, freqs):
        """q, k, v [B, S, H, d] of x (already normed), the qk bias added and RoPE applied."""
        B, S, E = x.shape
        q, k, v = self.attn.Wqkv(x).view(B, S, 3, self.n_heads, self.head_dim).unbind(2)
        q = q + self.attn.qk_bias[0]
        k = k + self.attn.qk_bias[1]
        return rope_interleaved(q, freqs), rope_interleaved(k, freqs), v

    def attend(self, q, k, v, allowed=None):
        B, S, H, d = q.shape
        y = causal_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), allowed)
        return self.attn.proj(y.transpose(1, 2).reshape(B, S, H * d))

    def attention(self, x, freqs, allowed=None):
        return self.attend(*self.qkv(x, freqs), allowed)

    def rest(self, x, a):
        """the block after its attention output a"""
        x = self.norm_2(a + x)
        g, u = self.mlp.fc(self.norm_3(x)).chunk(2, dim=-1)
        return self.norm_4(self.mlp.proj(F.silu(g) * u) + x)

    def forward(self, x, freqs, allowed=None):
        return self.rest(x, self.attention(self.norm_1(x), freqs, allowed))

    def forward_latest(self, x, freqs, running, kv):
        """One step of a token-by-token depth (Huginn.per_token_forward): the tokens not `running` [B, S]
        any more are read with the keys and values of their last step (kv, from the previous call; None at
        the first step, when every token runs). → (output, this step's keys and values)"""
        q, k, v = self.qkv(self.norm_1(x), freqs)
        if kv is not None:
            m = running[:, :, None, None]
            k, v = torch.where(m, k, kv[0]), torch.where(m, v, kv[1])
        return self.rest(x, self.attend(q, k, v)), (k, v)


class Huginn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        E = c['n_embd']
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(c['vocab_size'], E)
        self.transformer.prelude = nn.ModuleList([SandwichBlock(c) for _ in range(c['n_layers_in_prelude'])])
        self.transformer.adapter = nn.Linear(2 * E, E, bias=False)
        self.transformer.core_block = nn.ModuleList([SandwichBlock(c) for _ in range(c['n_layers_in_recurrent_block'])])
        self.transformer.coda = nn.ModuleList([SandwichBlock(c) for _ in range(c['n_layers_in_coda'])])
        self.transformer.ln_f = RMSNorm(E, c['norm_eps'])
        self.register_buffer('freqs_cis', rope_interleaved_table(E // c['n_heads'], c['rope_base'], c['block_size']))
        self.iv = c['init_values']
        self.emb_scale = self.iv['embed_scale']
        # takase init (upstream _init_weights): std everywhere, the residual out-projections scaled down
        for name, p in self.named_parameters():
            if name.endswith('attn.proj.weight') or name.endswith('mlp.proj.weight'):
                nn.init.normal_(p, 0, self.iv['out_proj'])
            elif name.endswith('wte.weight'):
                nn.init.normal_(p, 0, self.iv['embedding'])
            elif p.dim() >= 2:
                nn.init.normal_(p, 0, self.iv['std'])

    def lm_head(self, x):
        return x @ self.transformer.wte.weight.T  # tied

    def embed(self, ids):
        S = ids.shape[1]
        freqs = self.freqs_cis[:, :S]
        e = self.transformer.wte(ids) * self.emb_scale
        for block in self.transformer.prelude:
            e = block(e, freqs)
        return e, freqs

    def initial_state(self, e):
        """upstream initialize_state: trunc_normal(0, std, ±3 std) · √E"""
        x = torch.empty_like(e)
        std = self.iv['std']
        nn.init.trunc_normal_(x, 0.0, std, -3 * std, 3 * std)
        return x * self.emb_scale

    def core(self, s, e, freqs, allowed=None):
        x = self.transformer.adapter(torch.cat([s, e], dim=-1))
        for block in self.transformer.core_block:
            x = block(x, freqs, allowed)
        return x

    def decode(self, s, freqs):
        x = self.transformer.ln_f(s)
        for block in self.transformer.coda:
            x = block(x, freqs)
        return self.lm_head(self.transformer.ln_f(x)).float()

    def truncated_forward(self, ids, n, k):
        """The training forward: n recurrences without gradients, then k with (truncated backprop)."""
        e, freqs = self.embed(ids)
        s = self.initial_state(e)
        with torch.no_grad():
            for _ in range(n):
                s = self.core(s, e, freqs)
        s = s.detach()
        for _ in range(k):
            s = self.core(s, e, freqs)
        return self.decode(s, freqs)

    def per_token_forward(self, ids, depth, state=None):
        """The forward with a depth per token (depth [B, S], each ≥ 1), as per-token exits run it in ponder
        with the cache lookup `latest` (spec/huginn.md §3): a token runs the core for its own number of
        steps and then keeps its state, and at later steps the tokens after it read, in every core layer,
        the keys and values of its last step. Training with sampled depths per token on it teaches the
        model what exits will give it at inference: earlier tokens of any depth. Backprop through every step."""
        e, freqs = self.embed(ids)
        s = self.initial_state(e) if state is None else state
        kv = [None] * len(self.transformer.core_block)
        for t in range(int(depth.max())):
            running = depth > t
            x = self.transformer.adapter(torch.cat([s, e], dim=-1))
            for j, block in enumerate(self.transformer.core_block):
                x, kv[j] = block.forward_latest(x, freqs, running, kv[j])
            s = torch.where(running[..., None], x, s)
        return self.decode(s, freqs)

    def forward(self, ids, steps, state=None, trajectory=False):
        """logits after `steps` iterations; with trajectory=True a list of logits after 1..steps."""
        e, freqs = self.embed(ids)
        s = self.initial_state(e) if state is None else state
        out = []
        for i in range(steps):
            s = self.core(s, e, freqs)
            if trajectory:
                out.append(self.decode(s, freqs))
        return out if trajectory else self.decode(s, freqs)


def default_config(vocab, args):
    E, H = args.width, args.heads
    P, R, C, r = args.prelude, args.core, args.coda, args.mean_recurrence
    std = math.sqrt(2 / (5 * E))
    depth = P + C + R * r
    return {
        'architectures': ['RavenForCausalLM'], 'model_type': 'huginn_raven',
        'n_embd': E, 'n_heads': H, 'n_layers': P + R + C, 'block_size': args.ctx, 'vocab_size': vocab,
        'padded_vocab_size': vocab, 'padding_multiple': 64, 'tie_embeddings': True, 'tie_word_embeddings': True,
        'intermediate_size': args.intermediate, 'bias': False, 'qk_bias': True, 'norm_eps': 1e-6, 'rope_base': 50000,
        'n_layers_in_prelude': P, 'n_layers_in_recurrent_block': R, 'n_layers_in_coda': C,
        'mean_recurrence': r, 'mean_backprop_depth': args.backprop_depth,
        'architecture_class_name': 'RecurrentGPT', 'block_class_name': 'SandwichBlock', 'norm_class_name': 'RMSNorm_llama',
        'mlp_class_name': 'GatedMLP', 'nonlin_name': 'SiLU', 'init_strategy': 'takase', 'init_orthogonal': False,
        'state_init': 'like-init', 'injection_type': 'linear', 'sampling_scheme': 'poisson-lognormal-filling',
        'activation_checkpoint_impl': 'per-iteration', 'effective_expected_depth': depth,
        'init_values': {'std': std, 'out_proj': std / math.sqrt(2 * depth), 'embedding': std, 'embed_scale': math.sqrt(E)},
        'test_time_noise': 0, 'test_time_noise_type': 'fixed', 'torch_dtype': 'bfloat16',
    }


def sample_depth(rng, mean_recurrence, backprop):
    """upstream randomized_iteration_sampler, poisson-lognormal-filling: (no-grad steps, grad steps)"""
    t = max(mean_recurrence - backprop, 0)
    s = backprop
    sigma = 0.5
    mu = math.log(t + s) - sigma ** 2 / 2
    rate = rng.lognormal(mu, sigma)
    p = int(rng.poisson(rate)) + 1
    return max(p - s, 0), min(s, p)


class Family:
    name = 'huginn'

    @staticmethod
    def add_args(p):
        p.add_argument('--width', type=int, default=256)
        p.add_argument('--heads', type=int, default=4)
        p.add_argument('--intermediate', type=int, default=704)
        p.add_argument('--prelude', type=int, default=1)
        p.add_argument('--core', type=int, default=2)
        p.add_argument('--coda', type=int, default=1)
        p.add_argument('--mean-recurrence', type=int, default=6)
        p.add_argument('--backprop-depth', type=int, default=3)

    def __init__(self, config, args=None):
        self.config = config
        self.args = args
        self.default_depth = config['mean_recurrence']

    def build(self):
        return Huginn(self.config)

    def loss(self, model, batch, weights, step, rng):
        ids, targets = batch[:, :-1], batch[:, 1:]
        n, k = sample_depth(rng, self.config['mean_recurrence'], self.config['mean_backprop_depth'])
        logits = model.truncated_forward(ids, n, k)
        loss = weighted_mean(cross_entropy_rows(logits, targets), weights)
        return loss, {'depth': n + k}

    def after_step(self, model, step):
        pass

    def policies(self, model, ids):
        """(name, logits [B, S, V], depth [B, S]): fixed(1..2·default) from one trajectory, and the per-token
        exits exit(kl, t) and exit(latent-diff, t) as ponder runs them (exit_run)."""
        D = self.default_depth
        trajectory = model(ids, 2 * D, trajectory=True)
        B, S = ids.shape
        for d, logits in enumerate(trajectory, start=1):
            yield f'fixed({d})', logits, torch.full((B, S), d)
        for thr in KL_THRESHOLDS:
            yield (f'exit(kl, {thr:g})', *self.exit_run(model, ids, 'kl', thr))
        for thr in LATENT_THRESHOLDS:
            yield (f'exit(latent-diff, {thr:g})', *self.exit_run(model, ids, 'latent-diff', thr))

    def exit_run(self, model, ids, criterion, thr):
        """Per-token exits as ponder decodes token by token (at most the default depth): a token stops
        after the first step whose criterion is below thr — KL of its next-token distribution to the
        previous step's (uniform before the first), or ‖s_t − s_{t−1}‖ / ‖s_t‖ (s_0 the initial state)
        — and later tokens' core attention at step t sees only the earlier tokens that ran step t
        (cache lookup "full": an exited token has no entry there). Computed in parallel: at step t every
        token still running attends to the running ones; an exited token's state stays as it was.
        Exact for latent-diff; for kl the step logits' coda sees the other tokens' current states
        (ponder's: their final ones). → (logits [B, S, V], depth [B, S])"""
        B, S = ids.shape
        e, freqs = model.embed(ids)
        s = model.initial_state(e)
        running = torch.ones(B, S, dtype=torch.bool)
        depth = torch.zeros(B, S, dtype=torch.int64)
        causal = torch.ones(S, S, dtype=torch.bool).tril()
        eye = torch.eye(S, dtype=torch.bool)
        V = self.config['vocab_size']
        prev = torch.full((B, S, V), -np.log(V))
        for _ in range(self.default_depth):
            allowed = ((causal[None] & running[:, None, :]) | eye[None])[:, None]  # [B, 1, S, S]
            new = torch.where(running[..., None], model.core(s, e, freqs, allowed), s)
            depth += running.long()
            if criterion == 'kl':
                logq = torch.log_softmax(model.decode(new, freqs), dim=-1)
                value = (prev.exp() * (prev - logq)).sum(-1)
                prev = torch.where(running[..., None], logq, prev)
            else:
                value = (new - s).double().norm(dim=-1) / new.double().norm(dim=-1)
            running = running & ~(value < thr)
            s = new
        return model.decode(s, freqs), depth

    def relative_compute(self, policy, depth):
        """linear FLOPs per token relative to fixed(default), as ponder counts them (multiply-add = 2,
        attention scores left out): prelude + depth · (adapter + core) + coda + head, and for exit(kl)
        the coda + head at every check."""
        c = self.config
        E, I, V = c['n_embd'], c['intermediate_size'], c['vocab_size']
        block = 2 * (3 * E * E + E * E + 2 * I * E + I * E)
        P, R, C = c['n_layers_in_prelude'], c['n_layers_in_recurrent_block'], c['n_layers_in_coda']
        step, head, coda = 2 * 2 * E * E + R * block, 2 * V * E, C * block
        full = P * block + self.default_depth * step + coda + head
        d = depth.double()
        if policy.startswith('exit(kl'):
            return (P * block + d * (step + coda + head)) / full
        return (P * block + d * step + coda + head) / full

    def fixture(self, model, ids):
        """ponder's forward: s₀ from its seeded stream (seed 0), last-position logits per policy."""
        c = self.config
        S = ids.shape[1]
        state = ponder_initial_state(0, S, c['n_embd'], c['init_values']['std'], c['init_values']['embed_scale'])
        out = []
        trajectory = model(ids, self.default_depth, state=state.to(model.transformer.adapter.weight.dtype), trajectory=True)
        for d, logits in enumerate(trajectory, start=1):
            out.append({'policy': f'fixed({d})', 'logits': logits[0, -1]})
        out.append({'policy': 'default', 'logits': trajectory[-1][0, -1]})
        return out

    def export_tensors(self, model):
        sd = {k: v for k, v in model.state_dict().items()}
        sd['lm_head.weight'] = sd['transformer.wte.weight']  # published checkpoints store the tied copy too
        return sd
