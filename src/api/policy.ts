/** The depth policies live in src/depth/policy.ts, beside the controller that runs them; this path stays for bench/ and existing imports. */
export * from '../depth/policy.js';
