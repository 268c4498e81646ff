#!/usr/bin/env bash
# The Node package's tests, from a fresh checkout: install the dev tools, build the native addon
# (dev profile, the workspace's target dir, so the engine built for `cargo test` is reused), run
# the node:test suites, and type-check a TypeScript user of the whole API against index.d.ts.
# Needs the test videos (scripts/make-test-data.sh) and Node >= 20. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"

# `npm install` rather than `npm ci`: the per-platform optionalDependencies exist on the registry
# only once published, and `npm ci` refuses a lockfile without them; `npm install` keeps to the
# committed lockfile for everything else.
npm install --no-audit --no-fund --loglevel=error
npm run build
npm test
npx tsc --noEmit -p .
