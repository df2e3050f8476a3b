"""Train one model of a family on the prepared data (see README.md):

  nice -n 10 /usr/bin/python3 scripts/train/train.py huginn --run-dir /work/big/runs/huginn --steps 3000

The run folder gets config.json (the model's upstream config), args.json, log.jsonl and a resumable
checkpoint.pt; running the same command again continues where it stopped.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import huginn  # noqa: E402
import mor  # noqa: E402
import ouro  # noqa: E402

FAMILIES = {'huginn': huginn, 'mor': mor, 'ouro': ouro}


def make_family(name, config, args=None):
    return FAMILIES[name].Family(config, args)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('family', choices=sorted(FAMILIES))
    common.add_train_args(p)
    known, _ = p.parse_known_args()
    FAMILIES[known.family].Family.add_args(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.run_dir, exist_ok=True)
    data = common.Data(args.data)
    config_path = os.path.join(args.run_dir, 'config.json')
    if os.path.exists(config_path):
        with open(config_path) as f:
            config = json.load(f)
    else:
        config = FAMILIES[args.family].default_config(data.meta['tokenizer']['vocab'], args)
        with open(config_path, 'w') as f:
            json.dump(config, f, indent=2)
    with open(os.path.join(args.run_dir, 'args.json'), 'w') as f:
        json.dump({**vars(args), 'argv': sys.argv}, f, indent=2)
    with open(os.path.join(args.run_dir, 'commands.jsonl'), 'a') as f:  # every (re)start of the run
        f.write(json.dumps({'argv': sys.argv, 'started': time.strftime('%Y-%m-%dT%H:%M:%S')}) + '\n')
    family = make_family(args.family, config, args)
    model = family.build()
    if args.init_from and not os.path.exists(os.path.join(args.run_dir, 'checkpoint.pt')):
        # start from another run's weights (not its optimizer or step): e.g. part 1's prose-trained model
        model.load_state_dict(torch.load(args.init_from)['model'])
        print(f'initialised from {args.init_from}', flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f'{args.family}: {n_params:,} parameters', flush=True)
    seconds = common.train(family, model, data, args)
    print(f'done in {seconds:.0f} s', flush=True)


if __name__ == '__main__':
    main()
