/**
 * Writes the committed chat fixture folder test/fixtures/chat-models/ouro-chatml: a scripted Ouro
 * (test/chat-fixture.ts) with the Qwen2-style tokenizer and the ChatML template of the Ouro models
 * (test/fixtures/chat/chatml-default-system.json). Deterministic; about 80 KB.
 *
 *   node --import tsx scripts/make-chat-models.ts
 */
import { GREETER, QWEN2, fixtureTokenizerConfig, scriptedOuro, writeChatModel } from '../test/chat-fixture.js';

const dir = writeChatModel('test/fixtures/chat-models/ouro-chatml', scriptedOuro(GREETER, { vocab: 512, bosEosId: QWEN2.endoftext }), fixtureTokenizerConfig('chatml-default-system'));
console.log(`wrote ${dir}`);
