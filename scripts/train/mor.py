"""Mixture-of-Recursions, expert choice (raymin0223/mixture_of_recursions, model/mor_model/
expert_choice_router.py) in torch with upstream's state_dict names for Middle-Cycle sharing:

  embed → layer 0 → recursion r = 0..R−1: the shared block of bd layers on the tokens step r's router
  selects → layer R·bd + 1 → norm → lm_head (tied)

Step r: the candidates are the tokens selected at r − 1 (all at r = 0); p = α·sigmoid(router(h));
the top k_r = max(1, int(c_r·T)) candidates by p (per row, along the sequence) run the block, causal
among themselves at their own positions, and h ← h + p·Block(h) for them. Training adds upstream's
auxiliary loss (sampling: aux_loss): BCE of the router logit against "selected", coefficient 0.001,
which is what makes a causal threshold on sigmoid(logit) usable at inference.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import GatedMLP, LlamaAttention, RMSNorm, cross_entropy_rows, weighted_mean


class LlamaDecoderLayer(nn.Module):
    def __init__(self, mc):
        super().__init__()
        H, eps = mc['hidden_size'], mc['rms_norm_eps']
        self.self_attn = LlamaAttention(H, mc['num_attention_heads'], mc['num_key_value_heads'], mc['head_dim'], mc['rope_theta'])
        self.mlp = GatedMLP(H, mc['intermediate_size'])
        self.input_layernorm = RMSNorm(H, eps)
        self.post_attention_layernorm = RMSNorm(H, eps)

    def forward(self, x, positions, allowed=None):
        x = x + self.self_attn(self.input_layernorm(x), positions, allowed)
        return x + self.mlp(self.post_attention_layernorm(x))


class MoR(nn.Module):
    def __init__(self, config):
        super().__init__()
        mc, cfg = config['model_config'], config['cfg']
        self.mc, self.cfg = mc, cfg
        self.R = cfg['recursive']['num_recursion']
        self.bd = (mc['num_hidden_layers'] - 2) // self.R
        self.capacity = [float(c) for c in cfg['mor']['capacity'].split(',')]
        self.alpha = cfg['mor']['expert']['alpha']
        H = mc['hidden_size']
        self.embed_tokens = nn.Embedding(mc['vocab_size'], H)
        self.first = LlamaDecoderLayer(mc)
        self.block = nn.ModuleList([LlamaDecoderLayer(mc) for _ in range(self.bd)])  # shared by every recursion
        self.routers = nn.ModuleList([nn.Linear(H, 1, bias=False) for _ in range(self.R)])
        self.last = LlamaDecoderLayer(mc)
        self.norm = RMSNorm(H, mc['rms_norm_eps'])
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, 0.0, mc['initializer_range'])

    def head(self, h):
        return (self.norm(h) @ self.embed_tokens.weight.T).float()

    def run_block(self, x, positions, allowed=None):
        for layer in self.block:
            x = layer(x, positions, allowed)
        return x

    def forward(self, ids, mode='upstream', depth=None, threshold=0.5, record=None):
        """logits [B, S, V]. mode 'upstream': expert-choice top-k (upstream training and eval);
        'fixed': every token runs recursions 0..depth−1 (ponder's fixed(n)); 'causal': a token runs
        step r iff sigmoid(router logit) ≥ threshold (steps with capacity ≥ 1 always run).
        `record` (a dict) receives per-token depth [B, S] and the aux loss."""
        B, S = ids.shape
        positions = torch.arange(S)[None].expand(B, S)
        h = self.first(self.embed_tokens(ids), positions)
        depth_count = torch.zeros(B, S, dtype=torch.int64)
        aux = h.new_zeros(())
        if mode == 'upstream':
            cand = positions  # [B, kc] ascending
            for r in range(self.R):
                xc = h.gather(1, cand[..., None].expand(-1, -1, h.shape[-1]))
                logit = self.routers[r](xc).squeeze(-1)  # [B, kc]
                p = self.alpha * torch.sigmoid(logit)
                k = max(1, int(self.capacity[r] * S))
                # the k largest, ties to the lower position (as ponder; torch.topk leaves ties unspecified)
                top = torch.sort(p, dim=1, descending=True, stable=True).indices[:, :k].sort(dim=1).values
                sel, g = cand.gather(1, top), p.gather(1, top)
                chosen = torch.zeros_like(logit).scatter(1, top, 1.0)
                aux = aux + F.binary_cross_entropy_with_logits(logit, chosen)
                xs = h.gather(1, sel[..., None].expand(-1, -1, h.shape[-1]))
                y = self.run_block(xs, sel)  # compacted: causal among the selected, original positions
                h = h.scatter_add(1, sel[..., None].expand(-1, -1, h.shape[-1]), g[..., None] * y)
                depth_count.scatter_add_(1, sel, torch.ones_like(sel))
                cand = sel
        else:
            running = torch.ones(B, S, dtype=torch.bool)
            steps = self.R if depth is None else depth
            for r in range(steps):
                logit = self.routers[r](h).squeeze(-1)
                if mode == 'causal' and self.capacity[r] < 1:
                    running = running & (torch.sigmoid(logit) >= threshold)
                g = self.alpha * torch.sigmoid(logit)
                # a token sees the earlier tokens that also run this step (recursion-wise KV)
                causal = torch.ones(S, S, dtype=torch.bool).tril()
                allowed = (causal[None] & running[:, None, :])[:, None]  # [B, 1, S, S]
                allowed = allowed | torch.eye(S, dtype=torch.bool)[None, None]
                y = self.run_block(h, positions, allowed)
                h = torch.where(running[..., None], h + g[..., None] * y, h)
                depth_count += running.long()
        h = self.last(h, positions)
        if record is not None:
            record['depth'] = depth_count
            record['aux'] = aux
        return self.head(h)


def default_config(vocab, args):
    R, bd = args.recursions, args.block_layers
    layers = R * bd + 2
    capacity = ','.join(str((R - i) / R) for i in range(R))
    return {
        'model_config': {
            'architectures': ['LlamaForCausalLM'], 'model_type': 'llama',
            'vocab_size': vocab, 'hidden_size': args.width, 'intermediate_size': args.intermediate,
            'num_hidden_layers': layers, 'num_attention_heads': args.heads, 'num_key_value_heads': args.kv_heads,
            'head_dim': args.width // args.heads, 'hidden_act': 'silu', 'max_position_embeddings': args.ctx,
            'initializer_range': 0.02, 'rms_norm_eps': 1e-5, 'use_cache': True,
            'bos_token_id': None, 'eos_token_id': None, 'pad_token_id': None, 'tie_word_embeddings': True,
            'rope_theta': 10000.0, 'rope_scaling': None, 'attention_bias': False, 'attention_dropout': 0.0,
            'mlp_bias': False, 'pretraining_tp': 1, 'torch_dtype': 'bfloat16',
        },
        'cfg': {
            'model': 'smollm', 'attn_implementation': 'eager', 'precision': 'bf16', 'max_length': args.ctx,
            'recursive': {'enable': True, 'base_depth': bd, 'num_recursion': R, 'sharing': 'middle_cycle', 'ln_share': True, 'initialization': 'random'},
            'kv_sharing': {'enable': False, 'base_depth': None, 'num_recursion': None, 'sharing': None, 'update_cache': False},
            'relaxation': {'enable': False},
            'mor': {
                'enable': True, 'type': 'expert', 'capacity': capacity, 'rand_router': False, 'router_type': 'linear',
                'z_loss': False, 'z_coeff': 0.001, 'temp': 1.0,
                'expert': {'cap_warmup_step': 0, 'router_func': 'sigmoid', 'alpha': args.alpha, 'sampling': 'aux_loss',
                           'include_first': True, 'coeff': args.aux_coeff, 'gating': 'weighted'},
                'token': {'bal_warmup_step': 0, 'router_func': 'softmax', 'alpha': 1.0, 'balancing': 'loss', 'coeff': 0.1, 'u': 0.001, 'gating': 'weighted'},
            },
        },
    }


CAUSAL_THRESHOLDS = (0.3, 0.5, 0.7)


class Family:
    name = 'mor'

    @staticmethod
    def add_args(p):
        p.add_argument('--width', type=int, default=256)
        p.add_argument('--heads', type=int, default=4)
        p.add_argument('--kv-heads', type=int, default=2)
        p.add_argument('--intermediate', type=int, default=704)
        p.add_argument('--recursions', type=int, default=3)
        p.add_argument('--block-layers', type=int, default=2)
        p.add_argument('--alpha', type=float, default=0.1)
        p.add_argument('--aux-coeff', type=float, default=0.001)

    def __init__(self, config, args=None):
        self.config = config
        self.args = args
        self.default_depth = config['cfg']['recursive']['num_recursion']
        self.coeff = config['cfg']['mor']['expert']['coeff']

    def build(self):
        return MoR(self.config)

    def loss(self, model, batch, weights, step, rng):
        ids, targets = batch[:, :-1], batch[:, 1:]
        rec = {}
        logits = model(ids, 'upstream', record=rec)
        ce = weighted_mean(cross_entropy_rows(logits, targets), weights)
        return ce + self.coeff * rec['aux'], {'ce': round(ce.item(), 4), 'aux': round(rec['aux'].item(), 4)}

    def after_step(self, model, step):
        pass

    def policies(self, model, ids):
        """fixed(1..R), upstream's expert-choice top-k over the call (router), and ponder's causal
        rule router(causal, τ)."""
        B, S = ids.shape
        for d in range(1, self.default_depth + 1):
            yield f'fixed({d})', model(ids, 'fixed', depth=d), torch.full((B, S), d)
        rec = {}
        logits = model(ids, 'upstream', record=rec)
        yield 'router(upstream)', logits, rec['depth']
        for tau in CAUSAL_THRESHOLDS:
            rec = {}
            logits = model(ids, 'causal', threshold=tau, record=rec)
            yield f'router(causal, {tau:g})', logits, rec['depth']

    def relative_compute(self, policy, depth):
        """linear FLOPs per token relative to fixed(num_recursion): first and last layer + depth · block + routers + head"""
        mc = self.config['model_config']
        H, I, V = mc['hidden_size'], mc['intermediate_size'], mc['vocab_size']
        kv = mc['num_key_value_heads'] * mc['head_dim']
        layer = 2 * (2 * H * mc['num_attention_heads'] * mc['head_dim'] + 2 * H * kv + 3 * H * I)
        R = self.default_depth
        bd = (mc['num_hidden_layers'] - 2) // R
        full = 2 * layer + R * (bd * layer + 2 * H) + 2 * H * V
        return (2 * layer + depth.double() * (bd * layer + 2 * H) + 2 * H * V) / full

    def fixture(self, model, ids):
        out = [{'policy': f'fixed({d})', 'logits': model(ids, 'fixed', depth=d)[0, -1]} for d in range(1, self.default_depth + 1)]
        for policy, mode in (('default', 'upstream'), ('router(causal, 0.5)', 'causal')):
            rec = {}
            logits = model(ids, mode, threshold=0.5, record=rec)
            out.append({'policy': policy, 'logits': logits[0, -1], 'steps': rec['depth'][0]})
        return out

    def export_tensors(self, model):
        """upstream state_dict names; each shared block tensor once (under recursion 0's alias), as a
        safetensors save de-duplicates them; the tied lm_head stored as well."""
        R = model.R
        sd = {}
        put = lambda prefix, module: sd.update({f'{prefix}.{k}': v for k, v in module.state_dict().items()})
        put('model.embed_tokens', model.embed_tokens)
        put('model.layers.0', model.first)
        for j, layer in enumerate(model.block):
            put(f'model.layers.1.block.{j}', layer)
        for r in range(R):
            sd[f'model.layers.{r + 1}.mor_router.router.weight'] = model.routers[r].weight
        put(f'model.layers.{R + 1}', model.last)
        put('model.norm', model.norm)
        sd['lm_head.weight'] = model.embed_tokens.weight
        return sd
