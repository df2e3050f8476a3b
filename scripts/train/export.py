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


def evaluate(family, model, data, ctx, windows):
    """{policy: {bpb, mean_depth, synthetic: {accuracy, depth} per hop}} over the family's policies."""
    val = data.val_windows(ctx, windows)
    synth_ids, queries = common.synthetic_windows(data)
    results = {}

    # held-out prose
    sums = {}
    for i in range(0, len(val), 4):
        w = val[i:i + 4]
        targets = w[:, 1:]
        nbytes = data.token_bytes[targets].sum().item()
        for name, logits, depth in family.policies(model, w[:, :-1]):
            nats = common.cross_entropy_rows(logits, targets).double().sum().item()
            s = sums.setdefault(name, [0.0, 0.0, 0.0, 0])
            s[0] += nats
            s[1] += nbytes
            s[2] += depth.double().sum().item()
            s[3] += depth.numel()
    for name, (nats, nbytes, dsum, dn) in sums.items():
        results[name] = {'bpb': round(nats / np.log(2) / nbytes, 4), 'mean_depth': round(dsum / dn, 3)}
    # synthetic answers
    correct, depths = {}, {}
    for i in range(0, len(synth_ids), 4):
        w = synth_ids[i:i + 4]
        qs = [(wi - i, pos, ans, hops) for wi, pos, ans, hops in queries if i <= wi < i + 4]
        for name, logits, depth in family.policies(model, w):
            pred = logits.argmax(-1)
            correct.setdefault(name, []).extend(int(pred[wi, pos] == ans) for wi, pos, ans, _ in qs)
            depths.setdefault(name, []).extend(int(depth[wi, pos]) for wi, pos, _, _ in qs)
    for name in correct:
        results[name]['synthetic'] = {'accuracy': common.per_hop(queries, correct[name]), 'depth': common.per_hop(queries, depths[name]),
                                      'accuracy_all': round(float(np.mean(correct[name])), 4)}
    return results


def fixture_sequences(data):
    """Three fixed id sequences: held-out prose, synthetic lines ending at a query's '?', a short one."""
    prose = [int(x) for x in data.prose_val[1000:1032]]
    synth_ids, queries = common.synthetic_windows(data)
    wi, pos, _, _ = next(q for q in queries if q[3] == 3 and q[1] > 40)
    synthetic = [int(x) for x in synth_ids[wi, :pos + 1]]
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
    p.add_argument('--model-dir', required=True)
    p.add_argument('--fixture', required=True)
    p.add_argument('--data', default='/work/big/sotu-data')
    p.add_argument('--eval-windows', type=int, default=32)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--skip-eval', action='store_true')
    args = p.parse_args()
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
    data = common.Data(args.data)

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
    params = sum(t.numel() for t in model.parameters())
    summary = {'family': args.family, 'parameters': params, 'steps': state['step'], 'train_seconds': round(state['elapsed']),
               'tokens': state['step'] * train_args.batch * train_args.ctx, 'eval_windows': args.eval_windows,
               'eval_seconds': round(time.time() - t0), 'policies': results}
    with open(os.path.join(args.run_dir, 'eval.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=1))


if __name__ == '__main__':
    main()
