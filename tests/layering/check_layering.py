#!/usr/bin/env python3
"""Fails on any #include in core/ that runs against the layering written in
docs/ARCHITECTURE.md (the ```layering block: each folder and the folders it
may include besides its own). Also fails when a folder of core/ is missing
from the block, or the block names a folder that does not exist, so that the
document and the tree cannot drift apart.

usage: check_layering.py [SOURCE_DIR]
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[2])
doc = (root / "docs" / "ARCHITECTURE.md").read_text()
m = re.search(r"```layering\n(.*?)```", doc, re.S)
if not m:
    sys.exit("docs/ARCHITECTURE.md: no ```layering block")
allowed = {}
for n, line in enumerate(m.group(1).splitlines(), 1):
    if not line.strip():
        continue
    folder, _, deps = line.partition(":")
    allowed[folder.strip()] = set(deps.split()) | {folder.strip()}

problems = []
core = root / "core"
folders = {p.name for p in core.iterdir() if p.is_dir()}
for f in sorted(folders - allowed.keys()):
    problems.append(f"core/{f}/: not in the layering block of docs/ARCHITECTURE.md")
for f in sorted(allowed.keys() - folders):
    problems.append(f"docs/ARCHITECTURE.md: layering names core/{f}/, which does not exist")
for name, deps in allowed.items():
    for d in sorted(deps - allowed.keys()):
        problems.append(f"docs/ARCHITECTURE.md: layering lets {name} include {d}, which is not a folder of the block")

include = re.compile(r'^\s*#\s*include\s+"(([a-z_]+)/[^"]+)"')
for path in sorted(core.rglob("*")):
    if path.suffix not in (".hpp", ".cpp", ".h") or not path.is_file():
        continue
    folder = path.relative_to(core).parts[0]
    if folder not in allowed:
        continue
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        hit = include.match(line)
        if hit and hit.group(2) in folders and hit.group(2) not in allowed[folder]:
            problems.append(f"{path.relative_to(root)}:{n}: {folder} includes {hit.group(1)}, against the layering")

for p in problems:
    print(p)
if problems:
    sys.exit(f"{len(problems)} include(s) against the layering (docs/ARCHITECTURE.md, 'Layering')")
print(f"layering: {len(allowed)} folders, every include of core/ goes downwards")
