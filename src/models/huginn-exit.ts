/** The exit criteria moved to src/depth/criteria.ts (all families use them); this path stays for bench/ until it imports the new one. */
export * from '../depth/criteria.js';
