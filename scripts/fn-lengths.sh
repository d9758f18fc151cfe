#!/usr/bin/env bash
# The longest functions in src/ (lines from `fn` to its closing brace),
# longest first: scripts/fn-lengths.sh [how-many, default 15]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "${1:-15}" <<'PY'
import os, re, sys
rows = []
for root, _, names in os.walk("src"):
    for n in names:
        if not n.endswith(".rs"):
            continue
        p = os.path.join(root, n)
        lines = open(p).read().split("\n")
        for i, l in enumerate(lines):
            m = re.match(r"\s*(?:pub(?:\([a-z]+\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)", l)
            if not m:
                continue
            depth, seen = 0, False
            for j in range(i, len(lines)):
                code = re.sub(r'"(\\.|[^"\\])*"|//.*|\'.\'', "", lines[j])
                depth += code.count("{") - code.count("}")
                seen = seen or "{" in code
                if seen and depth <= 0:
                    break
                if not seen and code.rstrip().endswith(";"):
                    break
            if seen:
                rows.append((j - i + 1, f"{p}:{i+1}", m.group(1)))
rows.sort(reverse=True)
for n, where, name in rows[: int(sys.argv[1])]:
    print(f"{n:5}  {name:28} {where}")
PY
