/**
 * `npm run bench [-- --quick] [-- --json]`: the kernel benchmark suite, the same code as
 * `ponder bench kernels` (src/cli/bench.ts → bench/suite.ts), runnable without building dist/.
 */
import { main, nodeIO } from '../src/cli/main.js';

process.exitCode = await main(['bench', 'kernels', ...process.argv.slice(2)], nodeIO);
