#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so that `npx hotline …` works right after `npm install`
// in a clone, with no build step.
import { register } from 'tsx/esm/api';

register();
await import('../client/cli/main.ts');
