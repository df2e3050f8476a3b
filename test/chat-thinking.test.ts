/**
 * The thinking splitter (src/chat/thinking.ts): however a text arrives in pieces (a tag may span
 * tokens), the segments are those of the whole text at once; the tags belong to the thinking
 * segment; a prompt that leaves <think> open starts the stream inside it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ThinkingSplitter, promptOpensThinking, type TextSegment } from '../src/chat/thinking.js';

function split(pieces: string[], startInside = false): TextSegment[] {
  const s = new ThinkingSplitter(startInside);
  const out = [...pieces.flatMap((p) => s.push(p)), ...s.flush()];
  // adjacent segments of one kind are one segment, whichever push they came from
  return out.reduce<TextSegment[]>((acc, seg) => {
    const last = acc[acc.length - 1];
    if (last && last.thinking === seg.thinking) last.text += seg.text; else acc.push({ ...seg });
    return acc;
  }, []);
}

test('thinking is the text from <think> through </think>, tags included; the rest is answer', () => {
  assert.deepEqual(split(['<think>hm</think>\n\nHello!']), [{ text: '<think>hm</think>', thinking: true }, { text: '\n\nHello!', thinking: false }]);
  assert.deepEqual(split(['A <think>x</think> B <think>y']), [
    { text: 'A ', thinking: false }, { text: '<think>x</think>', thinking: true }, { text: ' B ', thinking: false }, { text: '<think>y', thinking: true },
  ]);
  assert.deepEqual(split(['91 = 7 × 13.\n</think>\n\nNo.'], true), [{ text: '91 = 7 × 13.\n</think>', thinking: true }, { text: '\n\nNo.', thinking: false }]);
  assert.deepEqual(split(['a < b, <thin']), [{ text: 'a < b, <thin', thinking: false }], 'an unfinished tag at the end is plain text');
});

test('a tag split over pieces is held back until it is complete or cannot be one: any chunking gives the segments of the whole text', () => {
  const alphabet = fc.constantFrom('<think>', '</think>', '<', '/', 't', 'h', 'i', 'n', 'k', '>', 'x', ' ', '\n');
  fc.assert(fc.property(fc.array(alphabet, { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 8 }), fc.boolean(), (parts, cuts, inside) => {
    const text = parts.join('');
    const at = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
    const pieces = [0, ...at, text.length].slice(1).map((end, i, ends) => text.slice(i === 0 ? 0 : ends[i - 1], end));
    const whole = split([text], inside);
    assert.deepEqual(split(pieces, inside), whole);
    assert.equal(whole.map((s) => s.text).join(''), text, 'nothing lost or added');
  }), { numRuns: 300 });
});

test('a prompt opens thinking when its last <think> is not closed', () => {
  assert.equal(promptOpensThinking('<|im_start|>assistant\n<think>\n'), true);
  assert.equal(promptOpensThinking('<|im_start|>assistant\n<think>\n\n</think>\n\n'), false);
  assert.equal(promptOpensThinking('<|im_start|>assistant\n'), false);
});
