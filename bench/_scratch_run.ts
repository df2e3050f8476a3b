import { main, nodeIO } from '../src/cli/main.js';
import { benchCommand } from '../src/cli/bench.js';
import { QUICK_PLAN } from './suite.js';
process.exitCode = await benchCommand(['kernels', ...process.argv.slice(2)], nodeIO, { ...QUICK_PLAN, linear: [{ M: 1, K: 768, N: 768 }, { M: 256, K: 1024, N: 1024 }], attentionPositions: [128, 4096] });
