"""Ouro / LoopLM (ByteDance modeling_ouro.py) in torch with upstream's tensor names: the whole
decoder looped total_ut_steps times, model.norm after every loop, and the exit gate
λ_t = sigmoid(early_exit_gate(h_t)).

Training follows the paper's two stages:
  stage I   (every step but the last --gate-steps): L = Σ_t p_t · CE_t − β · H(p) per token, where
            p is the exit distribution the gates define (p_t = λ_t Π_{j<t}(1 − λ_j), the last loop
            takes the rest), so every loop learns to predict and the gate learns where the loss is low;
  stage II  (the last --gate-steps steps, LM frozen): the gate alone learns to continue exactly when
            the next loop still lowers the loss: target w_t = sigmoid(k · (max(0, CE_t − CE_{t+1}) − γ))
            for "continue", BCE against 1 − λ_t.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import GatedMLP, LlamaAttention, RMSNorm, causal_attention, rope_rotate_half, weighted_mean


class OuroDecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, eps = c['hidden_size'], c['rms_norm_eps']
        self.self_attn = LlamaAttention(H, c['num_attention_heads'], c['num_key_value_heads'], c['head_dim'], c['rope_theta'])
        self.mlp = GatedMLP(H, c['intermediate_size'])
        self.input_layernorm = RMSNorm(H, eps)
        self.input_layernorm_2 = RMSNorm(H, eps)
        self.post_attention_layernorm = RMSNorm(H, eps)
        self.post_attention_layernorm_2 = RMSNorm(H, eps)

    def forward(self, x, positions):
        x = x + self.input_layernorm_2(self.self_attn(self.input_layernorm(x), positions))
        return x + self.post_attention_layernorm_2(self.mlp(self.post_attention_layernorm(x)))


class Ouro(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        H = c['hidden_size']
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(c['vocab_size'], H)
        self.model.layers = nn.ModuleList([OuroDecoderLayer(c) for _ in range(c['num_hidden_layers'])])
        self.model.norm = RMSNorm(H, c['rms_norm_eps'])
        self.model.early_exit_gate = nn.Linear(H, 1, bias=True)
        self.lm_head = nn.Linear(H, c['vocab_size'], bias=False)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, 0.0, c['initializer_range'])
        nn.init.zeros_(self.model.early_exit_gate.bias)

    def loops(self, ids, steps=None):
        """[h_t] post-norm hidden states and [gate logits_t] for t < steps (default total_ut_steps)."""
        B, S = ids.shape
        positions = torch.arange(S)[None].expand(B, S)
        x = self.model.embed_tokens(ids)
        hs, gates = [], []
        for _ in range(steps or self.c['total_ut_steps']):
            for layer in self.model.layers:
                x = layer(x, positions)
            x = self.model.norm(x)
            hs.append(x)
            gates.append(self.model.early_exit_gate(x).squeeze(-1))
        return hs, gates


def copy_forward_loop(model, x, positions, running, saved):
    """One loop of the decoder over x [B, S, H] as skip mode runs it (spec/ouro.md §4): the tokens no
    longer `running` [B, S] are read with the keys and values of their exit loop, same layer (`saved`,
    one (k, v) per layer, None before the first loop; updated in place). → the loop's post-norm output"""
    B, S, _ = x.shape
    for li, layer in enumerate(model.model.layers):
        a = layer.self_attn
        xn = layer.input_layernorm(x)
        q = a.q_proj(xn).view(B, S, a.heads, a.head_dim).transpose(1, 2)
        k = a.k_proj(xn).view(B, S, a.kv_heads, a.head_dim).transpose(1, 2)
        v = a.v_proj(xn).view(B, S, a.kv_heads, a.head_dim).transpose(1, 2)
        q, k = rope_rotate_half(q, positions, a.theta), rope_rotate_half(k, positions, a.theta)
        if saved[li] is not None:  # copy-forward: exited tokens' rows from their exit loop
            keep = running[:, None, :, None]
            k, v = torch.where(keep, k, saved[li][0]), torch.where(keep, v, saved[li][1])
        saved[li] = (k, v)
        r = a.heads // a.kv_heads
        kk, vv = (k.repeat_interleave(r, dim=1), v.repeat_interleave(r, dim=1)) if r > 1 else (k, v)
        y = a.o_proj(causal_attention(q, kk, vv).transpose(1, 2).reshape(B, S, -1))
        x = x + layer.input_layernorm_2(y)
        x = x + layer.post_attention_layernorm_2(layer.mlp(layer.post_attention_layernorm(x)))
    return model.model.norm(x)


def skip_run(model, ids, tau):
    """ponder's exit(gate, τ) in skip mode with copy-forward KV (spec/ouro.md §4): a token stops looping
    at the first loop whose exit CDF ≥ τ (the last loop otherwise) and keeps that loop's state; later
    loops' attention reads its keys/values of the exit loop, same layer. → (logits, loops [B, S])"""
    c = model.c
    B, S = ids.shape
    T = c['total_ut_steps']
    positions = torch.arange(S)[None].expand(B, S)
    h = model.model.embed_tokens(ids)
    running = torch.ones(B, S, dtype=torch.bool)
    loops = torch.zeros(B, S, dtype=torch.int64)
    cdf, rem = torch.zeros(B, S), torch.ones(B, S)
    saved = [None] * len(model.model.layers)
    out = h
    for t in range(T):
        x = copy_forward_loop(model, h, positions, running, saved)
        out = torch.where(running[..., None], x, out)
        loops += running.long()
        if t < T - 1:
            lam = torch.sigmoid(model.model.early_exit_gate(x).squeeze(-1).float())
            cdf = torch.where(running, cdf + lam * rem, cdf)
            rem = torch.where(running, rem * (1 - lam), rem)
            running = running & ~(cdf >= torch.tensor(tau, dtype=torch.float32))
        h = x
    return model.lm_head(out).float(), loops


def per_token_forward(model, ids, loops):
    """Logits with a loop count per token (loops [B, S], each in 1..total_ut_steps), run as skip mode
    runs exits: a token keeps its state after its own last loop and later tokens read its keys and values
    of that loop. Training on sampled counts teaches the loops what exits give them at inference."""
    B, S = ids.shape
    positions = torch.arange(S)[None].expand(B, S)
    h = model.model.embed_tokens(ids)
    saved = [None] * len(model.model.layers)
    out = h
    for t in range(int(loops.max())):
        running = loops > t
        x = copy_forward_loop(model, h, positions, running, saved)
        out = torch.where(running[..., None], x, out)
        h = x
    return model.lm_head(out).float()


def exit_pdf(gate_logits):
    """[..., T] exit distribution from the T gate logits (the last gate is unused), as upstream."""
    lam = torch.sigmoid(torch.stack(gate_logits, dim=-1))
    T = lam.shape[-1]
    pdf, rem = [], torch.ones_like(lam[..., 0])
    for t in range(T - 1):
        pdf.append(lam[..., t] * rem)
        rem = rem * (1 - lam[..., t])
    pdf.append(rem)
    return torch.stack(pdf, dim=-1)


def threshold_exit(pdf, tau):
    """upstream's Q-exit: the first loop whose CDF ≥ τ (float32), else the last."""
    mask = torch.cumsum(pdf, dim=-1) >= torch.tensor(tau, dtype=torch.float32)
    T = pdf.shape[-1]
    first = torch.where(mask.any(-1), mask.float().argmax(-1), torch.full(mask.shape[:-1], T - 1))
    return first


def default_config(vocab, args):
    H = args.width
    return {
        'architectures': ['OuroForCausalLM'], 'model_type': 'ouro',
        'vocab_size': vocab, 'hidden_size': H, 'intermediate_size': args.intermediate,
        'num_hidden_layers': args.layers, 'num_attention_heads': args.heads, 'num_key_value_heads': args.heads,
        'head_dim': H // args.heads, 'hidden_act': 'silu', 'max_position_embeddings': args.ctx,
        'initializer_range': 0.02, 'rms_norm_eps': 1e-6, 'use_cache': True, 'tie_word_embeddings': False,
        'rope_theta': 10000.0, 'rope_scaling': None, 'use_sliding_window': False, 'sliding_window': None,
        'max_window_layers': args.layers, 'layer_types': ['full_attention'] * args.layers, 'attention_dropout': 0.0,
        'total_ut_steps': args.loops, 'early_exit_threshold': 1.0,
        'bos_token_id': None, 'eos_token_id': None, 'pad_token_id': None, 'torch_dtype': 'bfloat16',
    }


GATE_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)


class Family:
    name = 'ouro'

    @staticmethod
    def add_args(p):
        p.add_argument('--width', type=int, default=256)
        p.add_argument('--heads', type=int, default=4)
        p.add_argument('--intermediate', type=int, default=704)
        p.add_argument('--layers', type=int, default=2)
        p.add_argument('--loops', type=int, default=4)
        p.add_argument('--entropy-beta', type=float, default=0.05)
        p.add_argument('--gate-steps', type=int, default=300)
        p.add_argument('--gate-k', type=float, default=50.0)
        p.add_argument('--gate-gamma', type=float, default=0.005)

    def __init__(self, config, args):
        self.config = config
        self.default_depth = config['total_ut_steps']
        self.args = args

    def build(self):
        return Ouro(self.config)

    def loss(self, model, batch, weights, step, rng):
        a = self.args
        ids, targets = batch[:, :-1], batch[:, 1:]
        stage2 = step >= a.steps - a.gate_steps
        if not stage2:
            hs, gates = model.loops(ids)
            ce = torch.stack([F.cross_entropy(model.lm_head(h).float().transpose(1, 2), targets, reduction='none') for h in hs], dim=-1)
            pdf = exit_pdf(gates)
            entropy = -(pdf * torch.log(pdf.clamp_min(1e-12))).sum(-1)
            loss = weighted_mean((pdf * ce).sum(-1), weights) - a.entropy_beta * entropy.mean()
            return loss, {'ce_loops': [round(x, 3) for x in ce.mean((0, 1)).tolist()], 'exit_mean': round(float((pdf * torch.arange(1, pdf.shape[-1] + 1)).sum(-1).mean()), 3)}
        with torch.no_grad():
            hs, _ = model.loops(ids)
            ce = torch.stack([F.cross_entropy(model.lm_head(h).float().transpose(1, 2), targets, reduction='none') for h in hs], dim=-1)
            improvement = (ce[..., :-1] - ce[..., 1:]).clamp_min(0)
            go_on = torch.sigmoid(a.gate_k * (improvement - a.gate_gamma))
        logits = torch.stack([model.model.early_exit_gate(h.detach()).squeeze(-1) for h in hs[:-1]], dim=-1)
        loss = F.binary_cross_entropy_with_logits(logits, 1 - go_on)
        return loss, {'stage': 2, 'continue_frac': round(float(go_on.mean()), 3)}

    def after_step(self, model, step):
        pass  # stage II needs no freezing: its loss reaches only the gate (the loops run under no_grad)

    def policies(self, model, ids):
        """fixed(1..T), the gate's threshold read-out (select: every loop runs, the read-out is the
        first loop whose exit CDF ≥ τ; depth = that loop) and skip mode (skip_run)."""
        hs, gates = model.loops(ids)
        B, S = ids.shape
        per_loop = [model.lm_head(h).float() for h in hs]
        for d, logits in enumerate(per_loop, start=1):
            yield f'fixed({d})', logits, torch.full((B, S), d)
        pdf = exit_pdf(gates)
        stacked = torch.stack(per_loop, dim=0)
        for tau in GATE_THRESHOLDS:
            exit_step = threshold_exit(pdf, tau)
            logits = stacked.gather(0, exit_step[None, ..., None].expand(1, B, S, stacked.shape[-1]))[0]
            yield f'exit(gate, {tau:g}, select)', logits, exit_step + 1
        for tau in GATE_THRESHOLDS:
            yield (f'exit(gate, {tau:g})', *skip_run(model, ids, tau))

    def relative_compute(self, policy, depth):
        """linear FLOPs per token relative to fixed(total_ut_steps): loops run · (layers + gate) + head
        (select runs every loop)."""
        c = self.config
        H, I, V, L = c['hidden_size'], c['intermediate_size'], c['vocab_size'], c['num_hidden_layers']
        kv = c['num_key_value_heads'] * c['head_dim']
        layer = 2 * (2 * H * c['num_attention_heads'] * c['head_dim'] + 2 * H * kv + 3 * H * I)
        loop, head = L * layer + 2 * H, 2 * H * V
        loops = torch.full_like(depth, self.default_depth) if policy.endswith('select)') else depth
        return (loops.double() * loop + head) / (self.default_depth * loop + head)

    def fixture(self, model, ids):
        hs, gates = model.loops(ids)
        per_loop = [model.lm_head(h).float() for h in hs]
        gates = [g.float() for g in gates]  # ponder builds the exit pdf and CDF in float32, as upstream does in the model dtype
        out = [{'policy': f'fixed({d})', 'logits': l[0, -1]} for d, l in enumerate(per_loop, start=1)]
        pdf = exit_pdf(gates)
        cdf = torch.cumsum(pdf, dim=-1)[0]  # [S, T]
        for policy, tau in (('default', self.config['early_exit_threshold']), ('exit(gate, 0.5, select)', 0.5)):
            exit_step = threshold_exit(pdf, tau)[0]
            out.append({'policy': policy, 'logits': per_loop[int(exit_step[-1])][0, -1], 'cdf': cdf})
        return out

    def export_tensors(self, model):
        return dict(model.state_dict())
