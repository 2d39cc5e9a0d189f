/** Bundle the CLI into dist/cli/ (see build-cli.mjs). */
export function buildCli(): Promise<{ inputs: number; ms: number }>;
