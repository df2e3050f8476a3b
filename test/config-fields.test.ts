/**
 * Config field readers (src/format/config.ts): each reader accepts exactly its type and range and
 * otherwise throws CFG_FIELD naming the file, the full field path and the allowed values; keys no
 * reader looked at are listed as warnings.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PonderError } from '../src/errors.js';
import {
  configInconsistent, configObject, hasField, ignoreFields, optionalBool, optionalInt, optionalIntList, optionalNumber, optionalString,
  parseConfigJson, requireBool, requireInt, requireNumber, requireString, section, unknownKeys,
} from '../src/format/config.js';

const PATH = 'model/config.json';

function expectField(fn: () => unknown, field: string, allowed: RegExp): PonderError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof PonderError, String(e));
    assert.equal(e.code, 'CFG_FIELD', e.message);
    assert.equal(e.field, field);
    assert.equal(e.path, PATH);
    assert.ok(e.message.includes(PATH) && e.message.includes(`"${field}"`), e.message);
    assert.match(e.message, allowed);
    assert.ok(e.hint.length > 0);
    return e;
  }
  assert.fail(`expected CFG_FIELD for ${field}`);
}

test('requireInt: missing, ill-typed ("n_embd": "5280"), fractional and out-of-range values name the field and the range', () => {
  const cfg = parseConfigJson('{"n_embd": "5280", "n_heads": 4.5, "n_layers": 0, "vocab": 1e400, "ok": 64}', PATH);
  expectField(() => requireInt(cfg, 'n_embd', { min: 1 }), 'n_embd', /is the string "5280"; it must be an integer >= 1/);
  expectField(() => requireInt(cfg, 'n_heads', { min: 1 }), 'n_heads', /is 4\.5/);
  expectField(() => requireInt(cfg, 'n_layers', { min: 1, max: 256 }), 'n_layers', /out of range; it must be an integer in \[1, 256\]/);
  expectField(() => requireInt(cfg, 'missing'), 'missing', /is missing/);
  expectField(() => requireInt(cfg, 'vocab', { min: 1 }), 'vocab', /Infinity/);
  assert.equal(requireInt(cfg, 'ok', { min: 1, max: 64 }), 64);
});

test('number ranges: exclusive and inclusive bounds (mor.capacity in (0, 1])', () => {
  const cfg = parseConfigJson('{"mor": {"capacity": 0, "temp": 1.0}, "eps": 1e-6}', PATH);
  const mor = section(cfg, 'mor');
  expectField(() => requireNumber(mor, 'capacity', { gt: 0, max: 1 }), 'mor.capacity', /it must be a number in \(0, 1\]/);
  assert.equal(requireNumber(mor, 'temp', { gt: 0, max: 1 }), 1);
  assert.equal(optionalNumber(cfg, 'eps', 1e-5, { gt: 0 }), 1e-6);
  assert.equal(optionalNumber(cfg, 'absent', 0.5), 0.5);
});

test('range checks agree with the bounds for every number (property)', () => {
  fc.assert(fc.property(fc.double({ noNaN: true, min: -10, max: 10 }), fc.double({ noNaN: true, min: -10, max: 10 }), fc.double({ noNaN: true, min: -10, max: 10 }), (v, a, b) => {
    const lo = Math.min(a, b);
    const hi = Math.max(a, b);
    const cfg = configObject({ x: v }, PATH);
    let accepted = true;
    try { requireNumber(cfg, 'x', { gt: lo, max: hi }); } catch { accepted = false; }
    assert.equal(accepted, v > lo && v <= hi);
  }), { numRuns: 300 });
});

test('strings, enums and booleans accept exactly their type', () => {
  const cfg = parseConfigJson('{"act": "silu", "sharing": "cycle", "tie": "true", "bias": false, "name": 3}', PATH);
  assert.equal(requireString(cfg, 'act', ['silu', 'gelu']), 'silu');
  expectField(() => requireString(cfg, 'sharing', ['middle_cycle', 'sequence']), 'sharing', /one of "middle_cycle", "sequence"/);
  expectField(() => requireString(cfg, 'name'), 'name', /is 3; it must be a string/);
  expectField(() => optionalBool(cfg, 'tie', false), 'tie', /true or false/);
  assert.equal(requireBool(cfg, 'bias'), false);
  assert.equal(optionalBool(cfg, 'absent', true), true);
  assert.equal(optionalString(cfg, 'absent', 'x'), 'x');
});

test('null counts as absent for optional readers and as missing for required ones', () => {
  const cfg = parseConfigJson('{"sliding_window": null, "pad_token_id": null}', PATH);
  assert.equal(optionalInt(cfg, 'sliding_window', 0), 0);
  expectField(() => requireInt(cfg, 'pad_token_id'), 'pad_token_id', /is missing/);
  assert.equal(hasField(cfg, 'sliding_window'), false);
});

test('integer lists: eos_token_id as one integer or a list', () => {
  const cfg = parseConfigJson('{"eos": 2, "eos_list": [1, 2], "bad": [1, "2"]}', PATH);
  assert.deepEqual(optionalIntList(cfg, 'eos', [], { min: 0 }, true), [2]);
  assert.deepEqual(optionalIntList(cfg, 'eos_list', [], { min: 0 }), [1, 2]);
  expectField(() => optionalIntList(cfg, 'bad', [], { min: 0 }), 'bad[1]', /string "2"/);
});

test('unknown keys are listed as warnings with their full path; bookkeeping keys are not', () => {
  const cfg = parseConfigJson('{"hidden_size": 8, "hiden_layers": 2, "torch_dtype": "bfloat16", "architectures": ["X"], "mor": {"capacity": 0.5, "capcity": 1}, "dropout": 0}', PATH);
  requireInt(cfg, 'hidden_size');
  requireNumber(section(cfg, 'mor'), 'capacity');
  ignoreFields(cfg, 'dropout');
  assert.deepEqual(unknownKeys(cfg), ['hiden_layers', 'mor.capcity']);
});

test('CFG_JSON for text that is not a JSON object; CFG_INCONSISTENT names the field', () => {
  for (const text of ['', '[1]', '{"a":', '<!doctype html>', 'version https://git-lfs.github.com/spec/v1', '{"a": 1, "a": 2}', '{"a": {"b": 1, "b": 1}}']) {
    assert.throws(() => parseConfigJson(text, PATH), (e: unknown) => e instanceof PonderError && e.code === 'CFG_JSON' && e.message.includes(PATH));
  }
  const cfg = parseConfigJson('{"n_embd": 10, "n_heads": 4}', PATH);
  const err = configInconsistent(cfg, 'n_heads', 'n_heads (4) must divide n_embd (10)');
  assert.equal(err.code, 'CFG_INCONSISTENT');
  assert.equal(err.field, 'n_heads');
  assert.ok(err.message.includes(PATH));
});

test('a "__proto__" key is an ordinary config key', () => {
  const cfg = parseConfigJson('{"__proto__": {"polluted": 1}, "n": 1}', PATH);
  assert.equal(Object.getPrototypeOf(cfg.values), Object.prototype);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.deepEqual(unknownKeys(cfg), ['__proto__', 'n']);
});
