#!/usr/bin/env node
import { main, nodeIO } from '../dist/src/cli/main.js';

// `ponder inspect big.safetensors | head` closes stdout early: the reader has what it wanted, so
// this ends the process quietly instead of an unhandled EPIPE with a stack trace.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

process.exitCode = await main(process.argv.slice(2), nodeIO);
