#!/usr/bin/env bash
# The test command: installs the official TypeScript client used by the compatibility tests
# (from npm, pinned by tests/ts-client/package-lock.json), then runs every test.
# Suites that need PostgreSQL or Node.js say they were skipped when those are missing locally;
# under CI=true a missing system binary fails the run instead.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v npm >/dev/null 2>&1; then
  if [ ! -d tests/ts-client/node_modules/@octopusdeploy/api-client ]; then
    npm ci --prefix tests/ts-client --no-audit --no-fund --loglevel=error
  fi
fi
rm -f target/tmp/rbac-matrix.txt
rm -rf target/tmp/portal-screenshots
cargo test --locked --workspace "$@"
# The RBAC matrices' cell counts (the in-process one over every route, the HTTP one over GET routes).
cargo test --locked -q -p ferry-server --lib rbac_matrix -- --nocapture 2>/dev/null | grep "RBAC matrix" || true
cat target/tmp/rbac-matrix.txt 2>/dev/null || true
# The browser journey's screenshots (one PNG per page visited).
if [ -d target/tmp/portal-screenshots ]; then
  echo "Portal screenshots: $(find target/tmp/portal-screenshots -name '*.png' | wc -l) in target/tmp/portal-screenshots"
fi
