#!/usr/bin/env python3
"""Import circles between the files of a crate (issue 19: "no import
circles between files within a crate").

Usage: scripts/import_circles.py CRATE_SRC_DIR...   (e.g. ops/src)

Builds a file-level graph: an edge A -> B when file A names a path
(`use crate::..`, `super::..`, an inline `crate::x::y`, or, in a mod.rs or
lib.rs, a child module `child::..`) that resolves into the file of module
B; names re-exported at the crate root (`pub use a::b::X` in lib.rs) resolve
to their module. `mod x;` declarations are not edges, and `#[cfg(test)]`
modules are skipped. Prints each strongly connected component of more than
one file with its edges, and exits 1 when there is one.

One edge is allowed (`ALLOWED`): the IR is recursive, since a control-flow
op holds its body graphs (`op/control/mod.rs`: `Body` holds a `Graph`,
whose nodes hold `Op`s). That data recursion is the only circle a graph
IR with subgraphs cannot avoid; everything else in `op/control/` reads
the IR without being read by it.

A heuristic over the text, not a Rust parser: it does not see macros that
expand to paths, `self::` paths, or modules declared inline in a file.
"""
import glob
import os
import re
import sys


def module_of(root, path):
    parts = os.path.relpath(path, root)[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def code_of(path):
    """The file's text without comments and without inline test modules."""
    src = re.sub(r"//[^\n]*", "", open(path, encoding="utf-8").read())
    # `#[cfg(test)] mod x;` declares a test file: drop the line only.
    src = re.sub(r"#\[cfg\(test\)\]\s*mod \w+;", "", src)
    # `#[cfg(test)] mod x { .. }` is by convention last: drop the rest.
    m = re.search(r"#\[cfg\(test\)\]\s*mod \w+ \{", src)
    return src[: m.start()] if m else src


def graph(root):
    files = glob.glob(os.path.join(root, "**", "*.rs"), recursive=True)
    mods = {module_of(root, p): p for p in files}
    reexports = {}
    lib = os.path.join(root, "lib.rs")
    if os.path.exists(lib):
        text = code_of(lib)
        for m in re.finditer(r"pub use ([\w:]+)::\{([^}]*)\};", text):
            for name in m.group(2).split(","):
                if name.strip():
                    reexports[name.strip()] = tuple(m.group(1).split("::"))
        for m in re.finditer(r"pub use ([\w:]+)::(\w+);", text):
            reexports[m.group(2)] = tuple(m.group(1).split("::"))

    def resolve(segs):
        if segs and segs[0] in reexports and (segs[0],) not in mods:
            segs = list(reexports[segs[0]])
        for k in range(len(segs), 0, -1):
            if tuple(segs[:k]) in mods:
                return tuple(segs[:k])
        return None

    edges = {m: set() for m in mods}
    for mod, path in mods.items():
        src = code_of(path)
        named = []
        for m in re.finditer(r"\buse\s+((?:crate|super)(?:::\w+)*)::\{([^;]*)\};", src, re.S):
            base = m.group(1).split("::")
            for item in re.split(r",(?![^{]*\})", m.group(2)):
                item = item.strip()
                if item:
                    named.append(base + re.match(r"[\w:]+", item).group(0).split("::"))
        for m in re.finditer(r"\b((?:crate|super)(?:::\w+)+)", src):
            named.append(m.group(1).split("::"))
        if path.endswith(("mod.rs", "lib.rs", "main.rs")):
            for kid in mods:
                if len(kid) == len(mod) + 1 and kid[: len(mod)] == mod:
                    if re.search(r"(?<![:\w])%s::" % re.escape(kid[-1]), src):
                        named.append(["crate", *kid])
        for segs in named:
            if segs[0] == "crate":
                segs = segs[1:]
            else:
                base = list(mod)
                while segs and segs[0] == "super":
                    segs, base = segs[1:], base[:-1]
                segs = base + segs
            target = resolve(segs)
            if target is not None and target != mod and target != ():
                edges[mod].add(target)
    return edges


# (from, to, why) edges left out of the circle search, each for a reason.
ALLOWED = [
    (("op", "control"), ("graph",), "a control-flow op's Body holds a Graph (a recursive IR)"),
]


def circles(edges):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    found = False
    for root in sys.argv[1:]:
        edges = graph(root)
        for a, b, _why in ALLOWED:
            edges.get(a, set()).discard(b)
        for comp in circles(edges):
            found = True
            name = lambda m: "/".join(m) or "lib"
            print(f"{root}: circle {', '.join(name(m) for m in comp)}")
            for a in comp:
                for b in sorted(edges[a]):
                    if b in comp:
                        print(f"    {name(a)} -> {name(b)}")
    if not found:
        print("no import circles")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
