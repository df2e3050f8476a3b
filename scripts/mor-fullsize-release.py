#!/usr/bin/python3
"""Writes a full-size synthetic MoR release checkpoint for `ponder convert mor` (never committed):
SmolLM-360M's published config (32 layers, hidden 960, 15 heads, 5 KV heads, vocab 49152, tied
embeddings) with the released rec3 middle_cycle expert-choice experiment, random weights, saved
with torch.save as upstream's model.state_dict(): every shared layer under each alias (one storage),
lm_head tied to embed_tokens. Hand-run (Debian's python3-torch):

    /usr/bin/python3 scripts/mor-fullsize-release.py OUT_DIR [bf16|fp32]
    node bin/ponder.js convert mor --weights OUT_DIR/pytorch_model.bin --config OUT_DIR/config.json \\
        --experiment OUT_DIR/experiment.yaml OUT_DIR/converted

Writes OUT_DIR/{pytorch_model.bin, config.json, experiment.yaml}.
"""
import collections
import json
import os
import sys

import torch
import yaml

OUT = sys.argv[1]
DTYPE = {'bf16': torch.bfloat16, 'fp32': torch.float32}[sys.argv[2] if len(sys.argv) > 2 else 'bf16']
SMOLLM_360M = {
    'architectures': ['LlamaForCausalLM'], 'attention_bias': False, 'attention_dropout': 0.0, 'bos_token_id': 0, 'eos_token_id': 0,
    'hidden_act': 'silu', 'hidden_size': 960, 'initializer_range': 0.02, 'intermediate_size': 2560, 'max_position_embeddings': 2048,
    'model_type': 'llama', 'num_attention_heads': 15, 'num_hidden_layers': 32, 'num_key_value_heads': 5, 'pretraining_tp': 1,
    'rms_norm_eps': 1e-05, 'rope_scaling': None, 'rope_theta': 10000.0, 'tie_word_embeddings': True, 'torch_dtype': 'float32',
    'transformers_version': '4.39.3', 'use_cache': True, 'vocab_size': 49152,
}
R = 3
EXPERIMENT = {
    'name': '250720_pretrain_smollm-360m_rec3_middle_cycle_random_lr3e-3_mor_expert_linear_alpha_0.1_sigmoid_aux_loss_0.001',
    'wandb': True, 'wandb_mode': 'online', 'dataset': 'fineweb_edu', 'total_batch_size': 1024, 'per_device_train_batch_size': 16,
    'max_length': 2048, 'add_bos_token': False, 'tokenizer': 'smollm', 'model': 'smollm', 'model_name_or_path': 'HuggingFaceTB/SmolLM-360M',
    'model_config': None, 'attn_implementation': 'flash_attention_2', 'use_pretrained_weights': False,
    'recursive': {'enable': True, 'base_depth': None, 'num_recursion': R, 'sharing': 'middle_cycle', 'ln_share': True, 'initialization': 'random'},
    'kv_sharing': {'enable': False, 'base_depth': None, 'num_recursion': None, 'sharing': None},
    'relaxation': {'enable': False, 'skip_first_loop': False, 'method': 'lora'},
    'mor': {'enable': True, 'type': 'expert', 'capacity': None, 'rand_router': False, 'router_type': 'linear', 'z_loss': False,
            'z_coeff': 0.001, 'temp': 1.0,
            'expert': {'cap_warmup_step': 0, 'router_func': 'sigmoid', 'alpha': 0.1, 'sampling': 'aux_loss', 'include_first': True,
                       'coeff': 0.001, 'gating': 'weighted'},
            'token': {'router_func': 'sigmoid', 'alpha': 0.1, 'balancing': 'loss', 'coeff': 0.001, 'u': 0.001, 'gating': 'weighted'}},
    'precision': 'bf16', 'num_train_steps': 14161,
}


def main():
    torch.manual_seed(0)
    c = SMOLLM_360M
    H, I, V = c['hidden_size'], c['intermediate_size'], c['vocab_size']
    head_dim = H // c['num_attention_heads']
    kv = c['num_key_value_heads'] * head_dim
    bd = (c['num_hidden_layers'] - 2) // R
    rand = lambda *shape: (torch.randn(*shape) * 0.02).to(DTYPE)
    layer = lambda: collections.OrderedDict([
        ('self_attn.q_proj.weight', rand(H, H)), ('self_attn.k_proj.weight', rand(kv, H)), ('self_attn.v_proj.weight', rand(kv, H)),
        ('self_attn.o_proj.weight', rand(H, H)), ('mlp.gate_proj.weight', rand(I, H)), ('mlp.up_proj.weight', rand(I, H)),
        ('mlp.down_proj.weight', rand(H, I)), ('input_layernorm.weight', torch.ones(H, dtype=DTYPE)),
        ('post_attention_layernorm.weight', torch.ones(H, dtype=DTYPE)),
    ])
    state = collections.OrderedDict()
    state['model.embed_tokens.weight'] = rand(V, H)
    for k, v in layer().items():
        state[f'model.layers.0.{k}'] = v
    block = [layer() for _ in range(bd)]
    for r in range(R):
        for j in range(bd):
            for k, v in block[j].items():
                state[f'model.layers.{1 + r}.block.{j}.{k}'] = v  # the same tensor in every recursion
        state[f'model.layers.{1 + r}.mor_router.router.weight'] = rand(1, H)
    for k, v in layer().items():
        state[f'model.layers.{R + 1}.{k}'] = v
    state['model.norm.weight'] = torch.ones(H, dtype=DTYPE)
    state['lm_head.weight'] = state['model.embed_tokens.weight']
    state._metadata = collections.OrderedDict([('', {'version': 1})])
    os.makedirs(OUT, exist_ok=True)
    torch.save(state, os.path.join(OUT, 'pytorch_model.bin'))
    with open(os.path.join(OUT, 'config.json'), 'w') as f:
        json.dump(SMOLLM_360M, f, indent=2)
    with open(os.path.join(OUT, 'experiment.yaml'), 'w') as f:
        yaml.safe_dump(EXPERIMENT, f, sort_keys=False)
    unique = {v.data_ptr(): v.numel() for v in state.values()}
    print(f'wrote {OUT}: {len(state)} entries, {len(unique)} storages, {sum(unique.values()) / 1e6:.1f} M parameters ({DTYPE})')


if __name__ == '__main__':
    main()
