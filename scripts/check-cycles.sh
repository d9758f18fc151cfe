#!/usr/bin/env bash
# Import cycles between the modules of src/: lists every `crate::…`,
# `super::…` and `child_module::…` reference per file (test modules after `#[cfg(test)]` left
# out), resolves it to the file of the deepest module it names, and prints
# each cycle (strongly connected set of files). Exits 1 when there is one.
#   scripts/check-cycles.sh          cycles only
#   scripts/check-cycles.sh --edges  also every edge
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import os, re, sys

files = {}
for root, _, names in os.walk("src"):
    for n in names:
        if n.endswith(".rs"):
            p = os.path.join(root, n)
            parts = os.path.relpath(p, "src")[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            if p == "src/main.rs":
                continue  # the binary: a separate crate
            files[tuple(parts)] = p

def mod_of(path):
    """The deepest module (a file of ours) that a path names."""
    for i in range(len(path), -1, -1):
        if tuple(path[:i]) in files:
            return tuple(path[:i])
    return ()

ident = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

def expand(text, i):
    """Parse a path tree at text[i:], return (list of paths, end)."""
    paths, cur = [], []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if text.startswith("{", i):
            i += 1
            while True:
                sub, i = expand(text, i)
                paths += [cur + s for s in sub]
                while i < len(text) and text[i] in " \n\t":
                    i += 1
                if text.startswith(",", i):
                    i += 1
                    while i < len(text) and text[i].isspace():
                        i += 1
                    if text.startswith("}", i):
                        return paths, i + 1
                    continue
                if text.startswith("}", i):
                    return paths, i + 1
                return paths, i
        m = ident.match(text, i)
        if not m:
            return paths + ([cur] if cur else []), i
        cur = cur + [m.group(0)]
        i = m.end()
        if text.startswith("::", i):
            i += 2
            continue
        return paths + [cur], i

edges = {}
for mod, p in files.items():
    text = open(p).read()
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    text = re.sub(r"//[^\n]*", "", text)
    here = set()
    for m in re.finditer(r"\b(crate|super)::", text):
        sub, _ = expand(text, m.end())
        base = [] if m.group(1) == "crate" else list(mod[:-1] if not p.endswith(("mod.rs", "lib.rs")) else mod[:-1])
        for s in sub:
            t = mod_of(base + s)
            if t != mod and t != ():
                here.add(t)
    # paths through a child module this file declares (`mod gate;` … `gate::X`)
    for child in re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;", text, re.M):
        for m in re.finditer(r"(?<![:\w])" + child + r"::", text):
            sub, _ = expand(text, m.end())
            for s in sub:
                t = mod_of(list(mod) + [child] + s)
                if t != mod and t != ():
                    here.add(t)
    edges[mod] = here

name = lambda m: "::".join(m) or "crate"
if "--edges" in sys.argv:
    for m in sorted(edges):
        for t in sorted(edges[m]):
            print(f"{name(m)} -> {name(t)}")

# Tarjan's strongly connected components.
index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def visit(v):
    index[v] = low[v] = n[0]; n[0] += 1
    stack.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))
for v in sorted(edges):
    if v not in index:
        visit(v)
for c in sccs:
    print(f"cycle ({len(c)} files): " + ", ".join(name(m) for m in c))
print(f"{len(sccs)} cycle(s) among {len(files)} files")
sys.exit(1 if sccs else 0)
PY
