// Writes docs/configuration.md from the one place node settings are defined
// (settingSpecs in server/node/config.ts, compiled to dist/); run after a build.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { configurationReference } = await import(join(root, 'dist', 'server', 'node', 'config.js'));
writeFileSync(join(root, 'docs', 'configuration.md'), configurationReference());
