/**
 * The families ponder runs, registered once: config.json → family is this one table, used by
 * loadModel (API, CLI `run`, the web page) and by `ponder inspect`. Adding a family:
 * CONTRIBUTING.md.
 */
import { asConfigObject, unknownKeys, unsupportedModelType, type ConfigObject } from '../format/config.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Family, FamilyAdapter, FamilyDefinition, FamilyStops, LoadOptions } from './family.js';
import { huginnFamily } from './huginn-family.js';
import { morFamily } from './mor-family.js';
import { ouroFamily } from './ouro-family.js';
import type { WeightSource } from './weights.js';
import { quantizedWeights, readQuantization } from './quantized.js';

export const FAMILIES: readonly FamilyDefinition[] = [ouroFamily, huginnFamily, morFamily];

/** How each family's config.json is recognised (the CFG_MODEL_TYPE hint). */
export const SUPPORTED_MODEL_TYPES: readonly string[] = FAMILIES.map((f) => f.recognisedBy);

/** The family whose config this is, or undefined. */
export function findFamily(config: ConfigObject | Record<string, unknown>): FamilyDefinition | undefined {
  const c = asConfigObject(config, 'config.json');
  return FAMILIES.find((f) => f.detect(c.values));
}

/** The family whose config this is; CFG_MODEL_TYPE naming the supported ones when none is. */
export function familyOf(config: ConfigObject | Record<string, unknown>, label = 'config.json'): FamilyDefinition {
  const c = asConfigObject(config, label);
  const found = findFamily(c);
  if (found) return found;
  const modelType = typeof c.values.model_type === 'string' ? c.values.model_type : undefined;
  throw unsupportedModelType(c, modelType ?? '(none: no model_type and no field that identifies a family)', SUPPORTED_MODEL_TYPES);
}

/** The family a config.json belongs to (its name). Unknown model types are CFG_MODEL_TYPE naming the supported ones. */
export function detectFamily(config: ConfigObject | Record<string, unknown>, label = 'config.json'): Family {
  return familyOf(config, label).family;
}

/** Detects, parses, loads and adapts: what loadModel needs of a family, with its stop ids and the config keys nobody read. */
export function loadFamily(config: ConfigObject, weights: WeightSource, runtime: Runtime, options: LoadOptions = {}): { adapter: FamilyAdapter; stops: FamilyStops; unknownConfigKeys: string[] } {
  const family = familyOf(config, config.path);
  const parsed = family.parseConfig(config);
  const source = quantizedWeights(weights, readQuantization(config)); // MLX-quantized modules as logical [N, K] weights
  const adapter = family.adapter(family.load(parsed, source, runtime, options));
  return { adapter, stops: family.stops(parsed), unknownConfigKeys: unknownKeys(config) };
}
