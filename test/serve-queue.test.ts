/**
 * The server's line (src/serve/queue.ts): one turn at a time, handed out in arrival order; at most
 * `capacity` wait; a waiter whose signal aborts leaves the line without taking a turn; ending a
 * turn twice passes it on once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TurnQueue, type Release } from '../src/serve/queue.js';

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

test('turns go in arrival order, one at a time, and the line holds at most its capacity', async () => {
  const queue = new TurnQueue(2);
  const order: string[] = [];
  const releases = new Map<string, Release>();
  const enter = (name: string): boolean => {
    const turn = queue.enter(new AbortController().signal);
    if (!turn) return false;
    void turn.then((release) => { order.push(name); releases.set(name, release); });
    return true;
  };
  assert.ok(enter('a') && enter('b') && enter('c'));
  assert.equal(enter('d'), false, 'a third waiter does not fit');
  await tick();
  assert.deepEqual(order, ['a']);
  assert.deepEqual(queue.size, { running: 1, waiting: 2 });
  releases.get('a')!();
  releases.get('a')!(); // twice: passes the turn on once
  await tick();
  assert.deepEqual(order, ['a', 'b']);
  assert.ok(enter('e'));
  releases.get('b')!();
  await tick();
  releases.get('c')!();
  await tick();
  releases.get('e')!();
  await tick();
  assert.deepEqual(order, ['a', 'b', 'c', 'e']);
  assert.deepEqual(queue.size, { running: 0, waiting: 0 });
  assert.ok(queue.retryAfterSeconds() >= 1);
});

test('a waiter whose signal aborts leaves the line with the reason, and the next one gets its turn', async () => {
  const queue = new TurnQueue(4);
  const first = await queue.enter(new AbortController().signal)!;
  const gone = new AbortController();
  const leaving = queue.enter(gone.signal)!;
  const staying = queue.enter(new AbortController().signal)!;
  gone.abort('client disconnected');
  await assert.rejects(leaving, (reason: unknown) => reason === 'client disconnected');
  assert.deepEqual(queue.size, { running: 1, waiting: 1 });
  first();
  const release = await staying;
  release();
  assert.deepEqual(queue.size, { running: 0, waiting: 0 });
  const aborted = new AbortController();
  aborted.abort('late');
  await assert.rejects(queue.enter(aborted.signal)!, (reason: unknown) => reason === 'late');
});
