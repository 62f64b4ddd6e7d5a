#!/usr/bin/env bash
# The layers above the sans-I/O core (src/app: h3, hq; src/uv: the libuv
# adapter) use the public API plus one documented internal header,
# core/mem.h (allocation through uvq_mem). Fails, listing the lines, if one
# of their files includes any other header of src/core.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bad=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"core/' src/app/*.[ch] src/uv/*.[ch] |
  grep -vE '"core/mem\.h"' || true)
if [ -n "$bad" ]; then
  echo "layering: src/app and src/uv may include only core/mem.h of src/core:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "layering: ok"
