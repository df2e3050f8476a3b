"""Export a trained run as a model folder ponder loads like a published checkpoint, measure it in
torch, and write the torch-vs-ponder conformance fixture:

  /usr/bin/python3 scripts/train/export.py huginn --run-dir /work/big/runs/huginn \
      --model-dir models/huginn-sotu --fixture test/fixtures/trained/huginn-sotu.safetensors

1. The parameters are rounded to bf16 in place; model.safetensors holds them as BF16 under upstream's
   names (Huginn's RoPE buffer freqs_cis stays F32), and everything below is computed from exactly
   those values.
2. eval.json in the run folder: held-out bits/byte and, on the synthetic lines, answer accuracy and
   depth at the query token per hop count, for every fixed depth and the family's adaptive rules.
3. The fixture: last-position logits of a few fixed id sequences under every fixed depth, the
   default policy and the family's adaptive read-out (as ponder spells the policy), with the
   per-position depths / exit CDFs where the policy decides them.
"""
import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from train import FAMILIES, make_family  # noqa: E402

# what `ponder run` samples with by default (no end-of-text token exists in the 2,048-token vocabulary)
GENERATION_CONFIG = {'do_sample': True, 'temperature': 0.8, 'top_k': 40, 'top_p': 1.0, 'repetition_penalty': 1.1}


def evaluate(family, model, data, ctx, prose_windows, mix_windows=None):
    """{policy: {bpb, mean_depth, compute, prose_bpb, synthetic: {accuracy, depth} per k}} over the family's
    policies. bpb / mean_depth / compute are over every predicted token of the held-out mix
    (models/eval/heldout.txt in windows of 256); compute is the family's linear FLOPs per token
    relative to fixed(default); prose_bpb is part 1's measure (the first prose_windows × ctx held-out
    prose tokens)."""
    results = {}
    windows = data.mix_eval['windows'][:mix_windows]
    acc = {}
    for i in range(0, len(windows), 4):
        group = windows[i:i + 4]
        for w in group if len({len(w['ids']) for w in group}) > 1 else [None]:  # the last window is shorter
            part = [w] if w is not None else group
            ids = torch.tensor([x['ids'] for x in part], dtype=torch.int64)
            targets = ids[:, 1:]
            nbytes = data.token_bytes[targets].sum().item()
            for name, logits, depth in family.policies(model, ids[:, :-1]):
                a = acc.setdefault(name, {'nats': 0.0, 'bytes': 0.0, 'depth': 0.0, 'compute': 0.0, 'n': 0, 'correct': [], 'qdepth': [], 'k': []})
                a['nats'] += common.cross_entropy_rows(logits, targets).double().sum().item()
                a['bytes'] += nbytes
                a['depth'] += depth.double().sum().item()
                a['compute'] += family.relative_compute(name, depth).double().sum().item()
                a['n'] += depth.numel()
                pred = logits.argmax(-1)
                for r, x in enumerate(part):
                    for q in x['queries']:
                        a['correct'].append(int(pred[r, q['pos']] == q['answer']))
                        a['qdepth'].append(float(depth[r, q['pos']]))
                        a['k'].append(q['k'])
    for name, a in acc.items():
        per_k = lambda values: {k: round(float(np.mean([v for v, kk in zip(values, a['k']) if kk == k])), 3) for k in sorted(set(a['k']))}
        results[name] = {'bpb': round(a['nats'] / np.log(2) / a['bytes'], 4), 'mean_depth': round(a['depth'] / a['n'], 3),
                         'compute': round(a['compute'] / a['n'], 3),
                         'synthetic': {'accuracy': per_k(a['correct']), 'depth': per_k(a['qdepth']), 'accuracy_all': round(float(np.mean(a['correct'])), 4)}}
    if prose_windows:
        val = data.val_windows(ctx, prose_windows)
        sums = {}
        for i in range(0, len(val), 4):
            w = val[i:i + 4]
            for name, logits, _ in family.policies(model, w[:, :-1]):
                s = sums.setdefault(name, [0.0, 0.0])
                s[0] += common.cross_entropy_rows(logits, w[:, 1:]).double().sum().item()
                s[1] += data.token_bytes[w[:, 1:]].sum().item()
        for name, (nats, nbytes) in sums.items():
            results[name]['prose_bpb'] = round(nats / np.log(2) / nbytes, 4)
    return results


def fixture_sequences(data):
    """Three fixed id sequences: held-out prose, held-out mix text ending at a k = 4 query's ':', a short one."""
    prose = [int(x) for x in data.prose_val[1000:1032]]
    w = next(w for w in data.mix_eval['windows'] if any(q['k'] == 4 and q['pos'] > 60 for q in w['queries']))
    pos = next(q['pos'] for q in w['queries'] if q['k'] == 4 and q['pos'] > 60)
    synthetic = w['ids'][:pos + 1]
    short = [int(x) for x in data.prose_val[5000:5005]]
    return [prose, synthetic, short]


def write_fixture(family, model, data, path, model_dir):
    seqs = fixture_sequences(data)
    model = model.double()  # the exact reference: ponder's float32 error against it is what is checked
    tensors, policies = {}, None
    for i, ids in enumerate(seqs):
        tensors[f'ids.{i}'] = torch.tensor(ids, dtype=torch.int32)
        entries = family.fixture(model, torch.tensor([ids]))
        if policies is None:
            policies = [e['policy'] for e in entries]
        for p, e in enumerate(entries):
            tensors[f'logits.{i}.{p}'] = e['logits'].float().contiguous()
            if 'steps' in e:
                tensors[f'steps.{i}.{p}'] = e['steps'].to(torch.int32).contiguous()
            if 'cdf' in e:
                tensors[f'cdf.{i}.{p}'] = e['cdf'].float().contiguous()
    model.float()
    meta = {'model': model_dir, 'sequences': str(len(seqs)), 'policies': json.dumps(policies),
            'note': 'torch reference (scripts/train/export.py) in float64 on the exported bf16 weights'}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    common.write_safetensors(path, tensors, meta)
    return policies


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('family', choices=sorted(FAMILIES))
    p.add_argument('--run-dir', required=True)
    p.add_argument('--model-dir')
    p.add_argument('--fixture')
    p.add_argument('--data', default=None, help="the prepared data folder (default: the run's)")
    p.add_argument('--eval-windows', type=int, default=32, help='held-out prose windows for prose_bpb')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--skip-eval', action='store_true')
    p.add_argument('--probe', type=int, default=None, metavar='N',
                   help='only measure the current checkpoint on the first N windows of the held-out mix (writes nothing): to watch a run learn')
    args = p.parse_args()
    if args.probe is None and not (args.model_dir and args.fixture):
        p.error('--model-dir and --fixture are required (or --probe N)')
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open(os.path.join(args.run_dir, 'config.json')) as f:
        config = json.load(f)
    with open(os.path.join(args.run_dir, 'args.json')) as f:
        train_args = argparse.Namespace(**json.load(f))
    family = make_family(args.family, config, train_args)
    model = family.build()
    state = torch.load(os.path.join(args.run_dir, 'checkpoint.pt'))
    model.load_state_dict(state['model'])
    model.eval()
    with torch.no_grad():  # parameters only: the freqs_cis buffer keeps its exact float32 values
        for t in model.parameters():
            t.copy_(t.bfloat16().float())
    data = common.Data(args.data or train_args.data)
    if args.probe is not None:
        with torch.no_grad():
            results = evaluate(family, model, data, train_args.ctx, 0, args.probe)
        print(f"step {state['step']}: policy, mix bits/byte, mean depth, compute, accuracy per k, depth at the query per k")
        for name, r in results.items():
            syn = r['synthetic']
            print(f"{name:24s} {r['bpb']:.4f} {r['mean_depth']:6.2f} {r['compute']:6.3f}  acc {list(syn['accuracy'].values())}  depth {list(syn['depth'].values())}")
        return

    os.makedirs(args.model_dir, exist_ok=True)
    # parameters in bf16; Huginn's freqs_cis buffer in f32, so that upstream (which loads the stored table)
    # and ponder (which recomputes it in f32) run the same RoPE
    tensors = {k: v if k == 'freqs_cis' else v.bfloat16() for k, v in family.export_tensors(model).items()}
    common.write_safetensors(os.path.join(args.model_dir, 'model.safetensors'), tensors, {'format': 'pt'})
    with open(os.path.join(args.model_dir, 'config.json'), 'w') as f:
        json.dump(config, f, indent=2)
        f.write('\n')
    with open(os.path.join(args.model_dir, 'generation_config.json'), 'w') as f:
        json.dump(GENERATION_CONFIG, f, indent=2)
        f.write('\n')
    shutil.copyfile(os.path.join(args.data, 'tokenizer.json'), os.path.join(args.model_dir, 'tokenizer.json'))

    with torch.no_grad():
        policies = write_fixture(family, model, data, args.fixture, args.model_dir)
        print(f'fixture {args.fixture}: {len(policies)} policies: {policies}', flush=True)
        if args.skip_eval:
            return
        t0 = time.time()
        results = evaluate(family, model, data, train_args.ctx, args.eval_windows)
        mix = data.mix_eval
    params = sum(t.numel() for t in model.parameters())
    summary = {'family': args.family, 'parameters': params, 'steps': state['step'], 'train_seconds': round(state['elapsed']),
               'tokens': state['step'] * train_args.batch * train_args.ctx, 'init_from': getattr(train_args, 'init_from', None),
               'eval_windows': args.eval_windows, 'mix_windows': len(mix['windows']), 'mix_queries': sum(len(w['queries']) for w in mix['windows']),
               'eval_seconds': round(time.time() - t0), 'policies': results}
    with open(os.path.join(args.run_dir, 'eval.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=1))


if __name__ == '__main__':
    main()
