#!/usr/bin/python3
"""Writes test/fixtures/mor-release/: one golden MoR case's weights as the MoR release ships a
model, for `ponder convert mor` to read back.

  pytorch_model.bin  torch.save of the state dict, laid out as upstream's model.state_dict() is:
                     module order, every shared layer under each alias (one storage, as upstream's
                     sharing_strategy aliases one Parameter), lm_head tied to embed_tokens, and the
                     _metadata attribute state_dict() carries
  config.json        the base config as a SmolLM config.json writes it (LlamaConfig, model_type llama)
  experiment.yaml    the Hydra YAML in the form of the release's conf/pretrain/*.yaml

Hand-run tooling (Debian's python3-torch and python3-yaml), never run by CI or tests:

    /usr/bin/python3 scripts/make-mor-pytorch-fixture.py [CASE]

CASE defaults to spec/golden/mor/mor_expert_middle_cycle_fwd (expert-choice, middle_cycle, R = 3).
"""
import collections
import json
import os
import re
import struct
import sys

import numpy as np
import torch
import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
CASE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, 'spec', 'golden', 'mor', 'mor_expert_middle_cycle_fwd')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'mor-release')
DTYPES = {'F32': (np.float32, torch.float32)}


def read_safetensors(path, prefix):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == '__metadata__' or not name.startswith(prefix):
            continue
        np_dtype, _ = DTYPES[info['dtype']]
        begin, end = info['data_offsets']
        array = np.frombuffer(data[begin:end], dtype=np_dtype).reshape(info['shape']).copy()
        out[name[len(prefix):]] = torch.from_numpy(array)
    return out


def module_order(name):
    """model.embed_tokens, model.layers.N... (numerically), model.norm, lm_head: the order of named_modules()."""
    if name.startswith('model.embed_tokens'):
        return (0, '')
    if name.startswith('model.layers.'):
        return (1, re.sub(r'\d+', lambda m: m.group(0).zfill(6), name))
    if name.startswith('model.norm'):
        return (2, '')
    return (3, '')


def main():
    case = json.load(open(CASE + '.json'))
    weights = read_safetensors(CASE + '.safetensors', 'weights.')
    model_config, cfg = case['config']['model_config'], case['config']['cfg']
    assert cfg['mor']['type'] == 'expert' and cfg['recursive']['sharing'] == 'middle_cycle' and cfg['recursive']['ln_share']
    R = cfg['recursive']['num_recursion']

    # upstream's aliasing: recursion r's block j is the same Parameter as recursion 0's
    state = collections.OrderedDict()
    for name in sorted(weights, key=module_order):
        tensor = weights[name]
        m = re.match(r'model\.layers\.(\d+)\.block\.(\d+)\.(.*)$', name)
        if m and 1 < int(m.group(1)) <= R:
            owner = f'model.layers.1.block.{m.group(2)}.{m.group(3)}'
            assert torch.equal(weights[owner], tensor), f'{name} differs from {owner}'
            tensor = state[owner]
        if name == 'lm_head.weight':
            assert torch.equal(weights['model.embed_tokens.weight'], tensor)
            tensor = state['model.embed_tokens.weight']
        state[name] = tensor
    state._metadata = collections.OrderedDict([('', {'version': 1})])

    os.makedirs(OUT, exist_ok=True)
    torch.save(state, os.path.join(OUT, 'pytorch_model.bin'))

    base = {
        'architectures': ['LlamaForCausalLM'], 'attention_bias': False, 'attention_dropout': 0.0,
        'bos_token_id': 0, 'eos_token_id': 0, 'hidden_act': 'silu', 'hidden_size': model_config['hidden_size'],
        'initializer_range': 0.02, 'intermediate_size': model_config['intermediate_size'],
        'max_position_embeddings': 2048, 'model_type': 'llama', 'num_attention_heads': model_config['num_attention_heads'],
        'num_hidden_layers': model_config['num_hidden_layers'], 'num_key_value_heads': model_config['num_key_value_heads'],
        'pretraining_tp': 1, 'rms_norm_eps': model_config['rms_norm_eps'], 'rope_scaling': None, 'rope_theta': model_config['rope_theta'],
        'tie_word_embeddings': True, 'torch_dtype': 'float32', 'transformers_version': '4.52.4', 'use_cache': True,
        'vocab_size': model_config['vocab_size'],
    }
    assert base['hidden_size'] // base['num_attention_heads'] == model_config['head_dim']
    with open(os.path.join(OUT, 'config.json'), 'w') as f:
        json.dump(base, f, indent=2)
        f.write('\n')

    mor = dict(cfg['mor'])
    mor['capacity'] = None  # the release leaves it to preprocess_config's default, (R-i)/R
    experiment = {
        'name': 'golden_' + os.path.basename(CASE), 'wandb': False, 'wandb_mode': 'offline', 'output_dir': None,
        'dataset': 'fineweb_edu', 'total_batch_size': 1024, 'per_device_train_batch_size': 16, 'max_length': cfg['max_length'],
        'add_bos_token': False, 'tokenizer': 'smollm', 'model': 'smollm', 'model_name_or_path': 'HuggingFaceTB/SmolLM-360M',
        'model_config': None, 'attn_implementation': 'flash_attention_2', 'use_pretrained_weights': False,
        'recursive': cfg['recursive'],
        'kv_sharing': {'enable': False, 'base_depth': None, 'num_recursion': None, 'sharing': None},
        'relaxation': {'enable': False, 'skip_first_loop': False, 'method': 'lora',
                       'lora': {'r': 16, 'alpha': 32, 'dropout': 0.1, 'target_modules': ['q_proj', 'v_proj']}},
        'mor': mor,
        'lr_scheduler_type': 'warmup_stable_decay', 'learning_rate': 0.003, 'precision': 'fp32', 'num_train_steps': 14161,
        'fixed_save_steps': '1373,3433,11328', 'deepspeed': 'ds_configs/stage2.config',
    }
    with open(os.path.join(OUT, 'experiment.yaml'), 'w') as f:
        yaml.safe_dump(experiment, f, sort_keys=False)
    print(f'wrote {OUT}: {len(state)} state-dict entries, {len({t.data_ptr() for t in state.values()})} storages')


if __name__ == '__main__':
    main()
