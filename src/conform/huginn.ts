import { PonderError } from '../errors.js';
import type { CaseRunner } from './runner.js';

export const runCase: CaseRunner = async (c) => {
  throw new PonderError('CONFORM_UNSUPPORTED', `${c.name}: the huginn family is not implemented yet`, { hint: 'see the open huginn issue' });
};
