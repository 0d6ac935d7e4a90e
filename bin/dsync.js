#!/usr/bin/env node
// The `dsync` executable: runs the compiled CLI (npm run build first).
import '../dist/cli/dsync.js';
