#!/usr/bin/env python3
"""Lists cycles between the top-level modules of each crate (`use crate::x` and `crate::x::…`
paths outside comments and test modules). ADR 0010: the tree reads as the data path, so no module
of a crate depends, through others, on itself. Exit status 1 when a cycle exists."""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES = ["schemas", "log", "auth", "ingest", "generator", "dataflows", "pipeline", "serving",
          "lakehouse", "ops", "."]

def graph(src):
    mods = {}
    for f in glob.glob(os.path.join(src, "**", "*.rs"), recursive=True):
        top = os.path.relpath(f, src).split(os.sep)[0].removesuffix(".rs")
        if top in ("lib", "main"):
            continue
        text = open(f, encoding="utf-8").read()
        cut = text.find("#[cfg(test)]")
        if cut >= 0:
            text = text[:cut]
        code = "\n".join(l for l in text.splitlines() if not l.strip().startswith("//"))
        deps = set(re.findall(r"crate::([a-z_][a-z_0-9]*)", code)) - {top}
        mods.setdefault(top, set()).update(deps)
    return {m: {d for d in ds if d in mods} for m, ds in mods.items()}

def cycles(g):
    found = set()
    def walk(start, node, path):
        for n in g.get(node, ()):
            if n == start:
                found.add(tuple(path))
            elif n not in path:
                walk(start, n, path + [n])
    for m in g:
        walk(m, m, [m])
    # one rotation per cycle
    return sorted({min(c[i:] + c[:i] for i in range(len(c))) for c in found})

bad = False
for crate in CRATES:
    src = os.path.join(ROOT, crate, "src")
    for c in cycles(graph(src)):
        bad = True
        print(f"{crate}: {' -> '.join(c + (c[0],))}")
print("module cycles found" if bad else "no module cycles")
sys.exit(1 if bad else 0)
