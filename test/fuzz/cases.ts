/**
 * The fuzzer's cases: every bundled model's config.json, model.safetensors, tokenizer.json (and a
 * generation_config.json), trace JSON of each model, tokenizer_config.json chat templates, and the
 * MoR release's PyTorch checkpoint with its configs, and `ponder serve` request bodies — each
 * mutated by one seeded mutation (bit flips, truncation, safetensors header-length lies and header
 * fields, JSON fields set to extremes: 0, -1, 1e9, 2^31, NaN, strings, nulls, deep nesting...).
 *
 * A case is a pure function of (seed, index): `makeCase(corpus, seed, index)` always gives the same
 * files and commands, so one case reproduces alone (`npm run fuzz -- --seed S --case K`).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Every bundled model: each directory of models/ with a config.json (demo-*, the trained *-sotu). */
export const MODELS: readonly string[] = readdirSync(join(ROOT, 'models')).filter((d) => existsSync(join(ROOT, 'models', d, 'config.json'))).sort();

// ---------------------------------------------------------------------------------------------
// Seeded randomness

/** mulberry32 over a seed mixed from (seed, index): each case has its own stream. */
export class Rng {
  private state: number;
  constructor(seed: number, index: number) {
    this.state = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 0x632be5ab, 0xc2b2ae35)) >>> 0;
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
}

// ---------------------------------------------------------------------------------------------
// Corpus: the valid inputs mutations start from

export interface Corpus {
  /** models/<name>/<file> bytes (plus a generation_config.json the fuzzer adds) */
  readonly models: Record<string, Record<string, Uint8Array>>;
  /** a valid trace JSON per model (`ponder run --json`) */
  readonly traces: Record<string, Uint8Array>;
  /** tokenizer_config.json texts holding the chat fixtures' templates */
  readonly chatConfigs: Uint8Array[];
  /** the MoR release fixture: pytorch_model.bin, config.json, experiment.yaml */
  readonly release: Record<string, Uint8Array>;
}

/** The model id the fuzzer's server answers to (`model` in every request body). */
export const SERVE_MODEL_ID = 'fuzz';

/** Valid request bodies of /v1/completions and /v1/chat/completions, streamed and not, using most fields the server reads. */
export function serveRequests(policy: string): { endpoint: 'completion' | 'chat'; body: Uint8Array }[] {
  const common = { model: SERVE_MODEL_ID, max_tokens: 2, seed: 7, temperature: 0.8, top_p: 0.9, top_k: 20, min_p: 0.05, repetition_penalty: 1.1, stop: ['\n\n'], policy, n: 1, user: 'fuzz' };
  const stream = { stream: true, stream_options: { include_usage: true } };
  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'Hi' }] }, { role: 'assistant', content: 'Hello.' }, { role: 'user', content: 'And now?' }];
  const chat = { ...common, messages, chat_template_kwargs: { enable_thinking: false }, logprobs: false, tools: [], response_format: { type: 'text' } };
  return [
    { endpoint: 'completion', body: bytes(JSON.stringify({ ...common, prompt: 'Once upon a time', echo: true, logit_bias: {} }, null, 2)) },
    { endpoint: 'completion', body: bytes(JSON.stringify({ ...common, ...stream, prompt: [[1, 2, 3]] }, null, 2)) },
    { endpoint: 'chat', body: bytes(JSON.stringify(chat, null, 2)) },
    { endpoint: 'chat', body: bytes(JSON.stringify({ ...chat, ...stream, max_completion_tokens: 2 }, null, 2)) },
  ];
}

const GENERATION_CONFIG = { do_sample: true, temperature: 0.7, top_k: 20, top_p: 0.9, eos_token_id: 2, max_new_tokens: 8 };

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Everything but the traces, which the worker makes by running each model once (loadCorpus in worker.ts). */
export function readCorpusFiles(): Omit<Corpus, 'traces'> {
  const models: Record<string, Record<string, Uint8Array>> = {};
  for (const m of MODELS) {
    models[m] = {};
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) models[m][f] = new Uint8Array(readFileSync(join(ROOT, 'models', m, f)));
    // the model's own generation_config.json, or one the fuzzer adds
    const generation = join(ROOT, 'models', m, 'generation_config.json');
    models[m]['generation_config.json'] = existsSync(generation) ? new Uint8Array(readFileSync(generation)) : bytes(JSON.stringify(GENERATION_CONFIG, null, 2));
  }
  const chatDir = join(ROOT, 'test', 'fixtures', 'chat');
  const chatConfigs = ['chatml-default-system.json', 'chatml-thinking.json', 'huginn-headers.json', 'tools-strict.json'].map((f) => {
    const fixture = JSON.parse(readFileSync(join(chatDir, f), 'utf8')) as { template: string };
    return bytes(JSON.stringify({ chat_template: fixture.template, bos_token: '<|endoftext|>', eos_token: '<|im_end|>', pad_token: null, model_max_length: 4096 }, null, 2));
  });
  const releaseDir = join(ROOT, 'test', 'fixtures', 'mor-release');
  const release: Record<string, Uint8Array> = {};
  for (const f of ['pytorch_model.bin', 'config.json', 'experiment.yaml']) release[f] = new Uint8Array(readFileSync(join(releaseDir, f)));
  return { models, chatConfigs, release };
}

// ---------------------------------------------------------------------------------------------
// Mutations

/** Values a JSON field is set to: counts at and past every limit, wrong types, nesting. Raw JSON text. */
export const EXTREMES: readonly string[] = [
  '0', '-1', '1', '2', '0.5', '1e9', '1000000', '10000', '2147483648', '2147483647', '-2147483648', '4294967296', '9007199254740993',
  '1e308', '-1e308', '1e-320', '-0', 'NaN', 'Infinity', '-Infinity', '"NaN"', '"1e9"', '"x"', '""', 'null', 'true', 'false',
  '[]', '{}', '[1,2,3]', '{"a":1}', '"\\u0000"', '"<script>alert(1)</script>"',
  `${'['.repeat(5000)}${']'.repeat(5000)}`, `${'{"a":'.repeat(200)}1${'}'.repeat(200)}`, JSON.stringify('x'.repeat(100_000)),
  `[${Array.from({ length: 20_000 }, (_, i) => i).join(',')}]`,
];

type JsonPath = (string | number)[];

/** Every path in a JSON value (objects and arrays included), in document order. */
function jsonPaths(value: unknown, path: JsonPath = [], out: JsonPath[] = []): JsonPath[] {
  out.push(path);
  if (Array.isArray(value)) value.forEach((v, i) => { if (out.length < 20_000) jsonPaths(v, [...path, i], out); });
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) { if (out.length < 20_000) jsonPaths(v, [...path, k], out); }
  return out;
}

const MARK = '\u0000__fuzz__\u0000';

/** The JSON text of `root` with the value at `path` replaced by raw JSON text `raw` (which may be invalid JSON on purpose: NaN). */
function withRaw(root: unknown, path: JsonPath, raw: string | undefined): string {
  if (path.length === 0) return raw ?? '';
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let parent = copy;
  for (const p of path.slice(0, -1)) parent = parent[p] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  if (raw === undefined) {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
    return JSON.stringify(copy, null, 2);
  }
  parent[last] = MARK;
  return JSON.stringify(copy, null, 2).replace(JSON.stringify(MARK), raw);
}

export type Mutation = { kind: string; describe: string; apply(input: Uint8Array): Uint8Array };

function bitFlips(rng: Rng, regionEnd?: number): Mutation {
  const n = 1 + rng.int(8);
  const picks = Array.from({ length: n }, () => [rng.next(), rng.int(8)] as const);
  return {
    kind: 'bit-flip', describe: `${n} bit flip${n > 1 ? 's' : ''}${regionEnd !== undefined ? ' in the header' : ''}`,
    apply(input) {
      const out = input.slice();
      const end = Math.min(out.length, regionEnd ?? out.length);
      for (const [where, bit] of picks) if (end > 0) out[Math.floor(where * end)] ^= 1 << bit;
      return out;
    },
  };
}

function truncation(rng: Rng): Mutation {
  const f = rng.next();
  const exact = rng.int(4); // cut at 0..3 bytes sometimes: the tiny-file paths
  return {
    kind: 'truncate', describe: `truncated (${exact === 0 ? `to ${exact} bytes` : `to ${(f * 100).toFixed(1)}%`})`,
    apply: (input) => input.slice(0, exact === 0 ? 0 : Math.floor(f * input.length)),
  };
}

function jsonField(rng: Rng, json: unknown): Mutation {
  const paths = jsonPaths(json);
  // the leaves and small containers are where a config's counts live: prefer them
  const path = rng.pick(paths.length > 1 ? paths.slice(1) : paths);
  const op = rng.int(10);
  const raw = op === 0 ? undefined : rng.pick(EXTREMES);
  const name = path.length === 0 ? '(the document)' : path.join('.');
  return {
    kind: raw === undefined ? 'json-delete' : 'json-field',
    describe: raw === undefined ? `${name} deleted` : `${name} = ${raw.length > 40 ? `${raw.slice(0, 40)}… (${raw.length} chars)` : raw}`,
    apply: () => bytes(withRaw(json, path, raw)),
  };
}

function jsonText(rng: Rng): Mutation {
  const op = rng.int(4);
  return {
    kind: 'json-text',
    describe: ['a duplicated first key', 'a byte-order mark and an HTML page', 'a git-LFS pointer', 'invalid UTF-8'][op],
    apply(input) {
      const text = new TextDecoder().decode(input);
      if (op === 0) return bytes(text.replace(/\{(\s*)("[^"]*"\s*:\s*[^,}]*),/, (_, ws, pair) => `{${ws}${pair}, ${pair},`));
      if (op === 1) return bytes(`\uFEFF<!doctype html><html><body>404</body></html>`);
      if (op === 2) return bytes('version https://git-lfs.github.com/spec/v1\noid sha256:0000\nsize 123\n');
      const out = input.slice();
      out[Math.floor(out.length / 2)] = 0xff;
      return out;
    },
  };
}

/** JSON files: a field set to an extreme, a key deleted, or text-level damage. */
export function jsonMutation(rng: Rng, input: Uint8Array): Mutation {
  const r = rng.next();
  if (r < 0.6) return jsonField(rng, JSON.parse(new TextDecoder().decode(input)));
  if (r < 0.75) return bitFlips(rng);
  if (r < 0.85) return truncation(rng);
  return jsonText(rng);
}

const u64 = (n: bigint): Uint8Array => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, n, true); return b; };

/** Safetensors: the header length lies, a header field is set to an extreme, bits flip (mostly in the header), truncation, NaN data. */
export function safetensorsMutation(rng: Rng, input: Uint8Array): Mutation {
  const n = Number(new DataView(input.buffer, input.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(input.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const r = rng.next();
  if (r < 0.2) {
    const lies: bigint[] = [0n, 1n, 7n, BigInt(n - 1), BigInt(n + 1), BigInt(input.length), BigInt(input.length - 7), 2n ** 32n, 100_000_001n, 2n ** 63n, 2n ** 64n - 1n];
    const lie = rng.pick(lies);
    return { kind: 'header-length', describe: `header length ${n} → ${lie}`, apply: (b) => { const out = b.slice(); out.set(u64(lie), 0); return out; } };
  }
  if (r < 0.5) {
    // a field of a tensor entry (or __metadata__) set to an extreme; the header re-encoded with its true length
    const names = Object.keys(header);
    const name = rng.pick(names);
    const fields = name === '__metadata__' ? Object.keys(header[name]) : ['dtype', 'shape', 'data_offsets', 'shape.0', 'data_offsets.1'];
    const field = rng.pick(fields.length > 0 ? fields : ['x']);
    const raw = rng.pick([...EXTREMES.slice(0, 33), '"F33"', '"f32"', '"F64"', '"BF16"', '"I64"', '[2, 18446744073709551614]', '[-1]', '[0, 0]', '[]']);
    return {
      kind: 'header-field', describe: `header ${name}.${field} = ${raw.length > 40 ? `${raw.slice(0, 40)}…` : raw}`,
      apply(b) {
        const path: JsonPath = [name, ...field.split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p))];
        const text = bytes(withRaw(header, path, raw));
        const out = new Uint8Array(8 + text.length + (b.length - 8 - n));
        out.set(u64(BigInt(text.length)), 0);
        out.set(text, 8);
        out.set(b.subarray(8 + n), 8 + text.length);
        return out;
      },
    };
  }
  if (r < 0.65) {
    // a tensor's data filled with NaN, Inf or huge values (legal in safetensors: the model must say so, not print noise)
    const entries = Object.entries(header).filter(([k]) => k !== '__metadata__');
    const [name, info] = rng.pick(entries);
    const fill = rng.pick([[0x7fc00000, 'NaN'], [0x7f800000, '+Inf'], [0xff800000, '-Inf'], [0x7f7fffff, 'FLT_MAX']] as const);
    return {
      kind: 'tensor-data', describe: `${name} (${info.dtype}) filled with ${fill[1]}`,
      apply(b) {
        const out = b.slice();
        const begin = 8 + n + info.data_offsets[0], end = 8 + n + info.data_offsets[1];
        const view = new DataView(out.buffer);
        if (info.dtype === 'F32') for (let o = begin; o + 4 <= end; o += 4) view.setUint32(o, fill[0], true);
        else for (let o = begin; o + 2 <= end; o += 2) view.setUint16(o, fill[0] >>> 16, true); // BF16: the f32's top half
        return out;
      },
    };
  }
  if (r < 0.9) return bitFlips(rng, rng.next() < 0.7 ? 8 + n : undefined);
  return truncation(rng);
}

/** Binary files without structure we model (the PyTorch zip): bit flips, truncation, a run of bytes overwritten. */
export function binaryMutation(rng: Rng): Mutation {
  const r = rng.next();
  if (r < 0.6) return bitFlips(rng);
  if (r < 0.8) return truncation(rng);
  const where = rng.next(), len = 1 + rng.int(16), value = rng.pick([0x00, 0xff, 0x7f, 0x80]);
  return { kind: 'overwrite', describe: `${len} bytes at ${(where * 100).toFixed(1)}% set to 0x${value.toString(16)}`, apply: (b) => { const out = b.slice(); out.fill(value, Math.floor(where * out.length), Math.floor(where * out.length) + len); return out; } };
}

/** YAML text: bit flips, truncation, or a line replaced by an extreme value. */
export function yamlMutation(rng: Rng, input: Uint8Array): Mutation {
  const r = rng.next();
  if (r < 0.3) return bitFlips(rng);
  if (r < 0.4) return truncation(rng);
  const lines = new TextDecoder().decode(input).split('\n');
  const candidates = lines.map((l, i) => [l, i] as const).filter(([l]) => /^\s*[\w.]+:\s*\S/.test(l));
  const [line, at] = rng.pick(candidates);
  const raw = rng.pick(EXTREMES.slice(0, 33));
  return {
    kind: 'yaml-field', describe: `experiment.yaml line ${at + 1} (${line.trim().split(':')[0]}) = ${raw}`,
    apply: () => { const out = [...lines]; out[at] = line.replace(/:\s*.*$/, `: ${raw}`); return bytes(out.join('\n')); },
  };
}

// ---------------------------------------------------------------------------------------------
// Cases

/** What a case runs: files to write into its directory, then commands (argv of `ponder`, or the chat API). */
export interface FuzzCase {
  readonly seed: number;
  readonly index: number;
  readonly target: string;
  readonly mutation: string;
  /** relative path → bytes, written into the case's directory (unchanged corpus files included) */
  readonly files: Record<string, Uint8Array>;
  /** each step: `ponder` argv with CASE for the case's directory, 'chat' (render the mutated template) or 'serve' (post request.json to a server of the model) */
  readonly steps: readonly (readonly string[])[];
}

export type Target = 'config.json' | 'model.safetensors' | 'tokenizer.json' | 'generation_config.json' | 'trace' | 'chat' | 'pytorch' | 'serve';
const TARGETS: readonly [Target, number][] = [
  ['config.json', 30], ['model.safetensors', 30], ['tokenizer.json', 10], ['generation_config.json', 5], ['trace', 12], ['chat', 5], ['pytorch', 8], ['serve', 10],
];

function pickTarget(rng: Rng): Target {
  const total = TARGETS.reduce((a, [, w]) => a + w, 0);
  let r = rng.next() * total;
  for (const [t, w] of TARGETS) { if ((r -= w) < 0) return t; }
  return TARGETS[0][0];
}

/** The policies a 2-token run uses (the first: the trace corpus's), by family (read from config.json as the registry would): the default mostly, and each criterion path sometimes. */
export const POLICIES: Record<string, readonly string[]> = {
  huginn: ['exit(kl)', 'default', 'default', 'fixed(3)', 'budget(6, exit(entropy-diff))'],
  mor: ['default', 'default', 'router(causal, 0.5)', 'exit(kl)', 'fixed(2)'],
  ouro: ['exit(gate, 0.5)', 'default', 'default', 'exit(kl)', 'fixed(2)'],
};

export function familyOf(config: Uint8Array): string {
  const c = JSON.parse(new TextDecoder().decode(config)) as Record<string, unknown>;
  return c.model_type === 'ouro' ? 'ouro' : 'model_config' in c ? 'mor' : 'huginn';
}

export const TARGET_NAMES: readonly Target[] = TARGETS.map(([t]) => t);

/** Case `index` of run `seed`; `only` makes every case one of that target (`npm run fuzz -- --target serve`). */
export function makeCase(corpus: Corpus, seed: number, index: number, only?: Target): FuzzCase {
  const rng = new Rng(seed, index);
  const picked = pickTarget(rng);
  const target = only ?? picked;
  const model = rng.pick(MODELS);
  const run = ['run', '-m', 'CASE/model', '-n', '2', '--prompt', 'Hi', '--seed', String(rng.int(1000)), '--policy', rng.pick(POLICIES[familyOf(corpus.models[model]['config.json'])])];
  const modelSteps = [['inspect', 'CASE/model'], run];
  const modelFiles = (): Record<string, Uint8Array> => Object.fromEntries(Object.entries(corpus.models[model]).map(([f, b]) => [`model/${f}`, b]));
  switch (target) {
    case 'config.json': case 'tokenizer.json': case 'generation_config.json': {
      const m = jsonMutation(rng, corpus.models[model][target]);
      const files = modelFiles();
      files[`model/${target}`] = m.apply(corpus.models[model][target]);
      return { seed, index, target: `${model}/${target}`, mutation: m.describe, files, steps: modelSteps };
    }
    case 'model.safetensors': {
      const m = safetensorsMutation(rng, corpus.models[model][target]);
      const files = modelFiles();
      files[`model/${target}`] = m.apply(corpus.models[model][target]);
      return { seed, index, target: `${model}/${target}`, mutation: m.describe, files, steps: modelSteps };
    }
    case 'trace': {
      const base = corpus.traces[model];
      const m = jsonMutation(rng, base);
      return { seed, index, target: `${model} trace JSON`, mutation: m.describe, files: { 'trace.json': m.apply(base) }, steps: [['trace', '--from', 'CASE/trace.json', '--html', 'CASE/trace.html']] };
    }
    case 'chat': {
      const base = rng.pick(corpus.chatConfigs);
      const m = jsonMutation(rng, base);
      return { seed, index, target: 'tokenizer_config.json (chat template)', mutation: m.describe, files: { 'tokenizer_config.json': m.apply(base) }, steps: [['chat', 'CASE/tokenizer_config.json']] };
    }
    case 'serve': {
      // the bundled model unchanged, a mutated request body: posted in-process to createServer (the chat endpoint renders the chat fixtures' first template)
      const requests = serveRequests(rng.pick(POLICIES[familyOf(corpus.models[model]['config.json'])]));
      const { endpoint, body } = rng.pick(requests);
      const m = jsonMutation(rng, body);
      return {
        seed, index, target: `serve ${endpoint === 'chat' ? '/v1/chat/completions' : '/v1/completions'} on ${model}`, mutation: m.describe,
        files: { 'request.json': m.apply(body) }, steps: [['serve', model, endpoint, 'CASE/request.json']],
      };
    }
    case 'pytorch': {
      const which = rng.pick(['pytorch_model.bin', 'pytorch_model.bin', 'config.json', 'experiment.yaml'] as const);
      const input = corpus.release[which];
      const m = which === 'pytorch_model.bin' ? binaryMutation(rng) : which === 'config.json' ? jsonMutation(rng, input) : yamlMutation(rng, input);
      const files = Object.fromEntries(Object.entries(corpus.release).map(([f, b]) => [`release/${f}`, b]));
      files[`release/${which}`] = m.apply(input);
      return {
        seed, index, target: `MoR release ${which}`, mutation: m.describe, files,
        steps: [
          ['convert', 'mor', '--weights', 'CASE/release/pytorch_model.bin', '--config', 'CASE/release/config.json', '--experiment', 'CASE/release/experiment.yaml', 'CASE/converted'],
          ['inspect', 'CASE/converted'],
          ['run', '-m', 'CASE/converted', '-n', '2', '--ids', '1,2,3'],
        ],
      };
    }
  }
}
