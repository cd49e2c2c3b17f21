#!/usr/bin/env python3
"""Fails when two modules of one crate import each other (a circle `a <-> b`), at the level of
top-level modules and of their children. Reads `crate::` and `super::` paths outside comments
and test modules. Usage: import_cycles.py CRATE_SRC_DIR..."""
import os
import re
import sys


def modules(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".rs"):
                p = os.path.join(d, f)
                rel = os.path.relpath(p, root)[:-3].split(os.sep)
                if rel[-1] in ("mod", "lib", "main"):
                    rel = rel[:-1]
                out[p] = rel
    return out


def edges(root, depth):
    ms = modules(root)
    known = {tuple(v[:n]) for v in ms.values() for n in range(1, depth + 1)}
    found = set()
    for p, m in ms.items():
        src = open(p, encoding="utf-8").read()
        src = re.sub(r"#\[cfg\(test\)\]\s*mod tests\s*\{.*", "", src, flags=re.S)
        src = "\n".join(l for l in src.split("\n") if not l.strip().startswith("//"))
        me = tuple(m[:depth])
        targets = [t.split("::") for t in re.findall(r"crate::((?:[a-z_0-9]+::)*[a-z_0-9]+)", src)]
        targets += [m[:-1] + [t] for t in re.findall(r"\bsuper::([a-z_0-9]+)", src)]
        for t in targets:
            tgt = tuple(t[:depth])
            if tgt and tgt != me and tgt in known:
                found.add((me, tgt))
    return found


def main():
    bad = []
    for root in sys.argv[1:]:
        for depth in (1, 2):
            e = edges(root, depth)
            for a, b in sorted({tuple(sorted(x)) for x in e if (x[1], x[0]) in e}):
                bad.append(f"{root}: {'/'.join(a)} <-> {'/'.join(b)}")
    for line in bad:
        print("import circle:", line)
    print(f"import circles: {len(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
