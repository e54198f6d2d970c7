"""Checks what hadolint cannot: that the Dockerfile's build context is right.

Usage: check_dockerfile.py [Dockerfile]   (stdlib only; any python3 >= 3.11)

1. Every COPY/ADD source taken from the context (not --from=stage, not a URL)
   exists in the repo, or for a glob, matches something.
2. No such source is excluded by .dockerignore.
3. The Cargo workspace reaches the builder: Cargo.toml, Cargo.lock and every
   member's Cargo.toml and src/ are inside the context, and so are the files
   that member sources embed with include_str!/include_bytes! (e.g. the
   example hooks `hook new` ships).

Prints one line per problem and exits 1 if there are any.

.dockerignore matching follows Docker's rules closely enough for this repo:
patterns are relative to the context root, `*`/`?` stay within a path
segment, `**` crosses segments, a pattern that matches a directory excludes
everything under it, `!` re-includes, and the last matching line wins.
"""

from __future__ import annotations

import glob
import json
import re
import shlex
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions(dockerfile: Path) -> list[tuple[int, str]]:
    """(line number, text) per instruction, continuation lines joined, comments dropped."""
    result, current, start = [], "", 0
    for number, raw in enumerate(dockerfile.read_text().splitlines(), 1):
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if not current:
            start = number
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        result.append((start, current + line))
        current = ""
    return result


def copy_sources(text: str) -> list[str] | None:
    """Context sources of a COPY/ADD, or None for other instructions and --from copies."""
    keyword, _, rest = text.partition(" ")
    if keyword.upper() not in ("COPY", "ADD"):
        return None
    rest = rest.strip()
    flags = []
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        flags.append(flag)
        rest = rest.strip()
    if any(f.startswith("--from") for f in flags):
        return None
    args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    return [a for a in args[:-1] if not re.match(r"^[a-z]+://", a)]


def ignore_rules(root: Path) -> list[tuple[bool, re.Pattern]]:
    """(is_exception, regex) per .dockerignore line, in order."""
    path = root / ".dockerignore"
    if not path.exists():
        return []
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        pattern = re.sub(r"^\./", "", pattern)
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((exception, re.compile(regex + r"\Z")))
    return rules


def is_ignored(relative: str, rules) -> bool:
    """Docker excludes a path when the last rule matching it, or a parent of it, excludes."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for exception, regex in rules:
        if any(regex.match(c) for c in candidates):
            ignored = not exception
    return ignored


def check_copy_sources(root: Path, dockerfile: Path, rules) -> list[str]:
    problems = []
    for line, text in instructions(dockerfile):
        for source in copy_sources(text) or []:
            if "$" in source:
                problems.append(f"{dockerfile.name}:{line}: cannot check source with a variable: {source}")
                continue
            matches = glob.glob(source, root_dir=root) if any(c in source for c in "*?[") else (
                [source] if (root / source).exists() else []
            )
            if not matches:
                problems.append(f"{dockerfile.name}:{line}: COPY source does not exist: {source}")
            for match in matches:
                rel = str(Path(match))
                if rel != "." and is_ignored(rel, rules):
                    problems.append(f"{dockerfile.name}:{line}: COPY source excluded by .dockerignore: {match}")
    return problems


def check_workspace_in_context(root: Path, rules) -> list[str]:
    manifest = tomllib.loads((root / "Cargo.toml").read_text())
    required = ["Cargo.toml", "Cargo.lock"]
    for member in manifest.get("workspace", {}).get("members", []):
        for path in sorted(glob.glob(member, root_dir=root)):
            required += [f"{path}/Cargo.toml", f"{path}/src", *sorted(embedded_paths(root, path))]
    problems = []
    for path in required:
        if not (root / path).exists():
            problems.append(f"workspace file missing: {path}")
        elif is_ignored(path, rules):
            problems.append(f".dockerignore excludes a file the builder needs: {path}")
    return problems


INCLUDE = re.compile(r'include_(?:str|bytes)!\(\s*(?:concat!\(\s*)?"([^"]+)"')


def embedded_paths(root: Path, member: str) -> set[str]:
    """Context paths embedded by a member's sources.

    Only the first string literal is known (the rest of a concat! may be a
    macro variable), so this yields the deepest existing path it names.
    """
    paths = set()
    for source in (root / member).rglob("*.rs"):
        if "target" in source.relative_to(root).parts:
            continue
        for literal in INCLUDE.findall(source.read_text(errors="replace")):
            target = (source.parent / literal).resolve()
            while not target.exists() and target != root:
                target = target.parent
            if target != root and target.is_relative_to(root):
                paths.add(str(target.relative_to(root)))
    return paths


def main() -> None:
    dockerfile = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "Dockerfile"
    rules = ignore_rules(ROOT)
    problems = check_copy_sources(ROOT, dockerfile, rules) + check_workspace_in_context(ROOT, rules)
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"{dockerfile.name}: COPY sources exist and are in the build context; workspace and embedded files included")


if __name__ == "__main__":
    main()
