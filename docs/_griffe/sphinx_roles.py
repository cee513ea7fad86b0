"""A griffe extension for the docs build: the docstrings' reStructuredText read as Markdown.

The docstrings use two reStructuredText forms that Markdown would show as
text:

- roles (``:class:`Insight```, ``:meth:`login```): a role naming a documented
  object becomes a cross-reference, resolved as a reader of that docstring
  would: a public name of ``memcachier_async`` or ``memcachier_async.testing``
  first, then a member of the class the docstring belongs to. Anything else
  (private helpers, other libraries) becomes plain code, so
  ``mkdocs build --strict`` never meets a reference it cannot resolve;
- literal blocks (a paragraph ending in ``::``, then an indented block): a
  fenced Python block.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|meth|func|data|attr|exc|obj|mod):`(~?)([\w.]+)`")
PUBLIC_MODULES = ("memcachier_async", "memcachier_async.testing")

Resolve = Callable[[str], "str | None"]


def convert(text: str, resolve: Resolve) -> str:
    """Replace each role of ``text``: a link where ``resolve`` finds the target, else code."""

    def replace(match: re.Match[str]) -> str:
        short, target = match[1] == "~", match[2]
        shown = target.rsplit(".", 1)[-1] if short else target
        path = resolve(target)
        return f"`{shown}`" if path is None else f"[`{shown}`][{path}]"

    return ROLE.sub(replace, text)


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def literal_blocks(text: str) -> str:
    """``text::`` (or a lone ``::``) and the indented block after it: ``text:`` and a fence."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        start = i + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        if (
            not line.rstrip().endswith("::")
            or start == i + 1
            or start == len(lines)
            or indent_of(lines[start]) <= indent_of(line)
        ):
            out.append(line)
            i += 1
            continue
        margin, depth = " " * indent_of(line), indent_of(lines[start])
        end = start
        while end < len(lines) and (not lines[end].strip() or indent_of(lines[end]) >= depth):
            end += 1
        while not lines[end - 1].strip():
            end -= 1
        lead = line.rstrip()[:-2].rstrip()
        if lead.strip():
            out += [lead + ":", ""]
        out += [f"{margin}```python", *(f"{margin}{code[depth:]}" for code in lines[start:end])]
        out.append(f"{margin}```")
        i = end
    return "\n".join(out)


def walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if isinstance(member, griffe.Object) and member.parent is obj:
            yield from walk(member)


class SphinxRoles(griffe.Extension):
    """Rewrites the docstrings of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "memcachier_async":
            return
        # Public path of each exported object, keyed by its name and by its canonical path.
        public: dict[str, str] = {}
        by_canonical: dict[str, str] = {}
        objects: dict[str, griffe.Object] = {}
        for module_path in PUBLIC_MODULES:
            module = pkg if module_path == pkg.path else pkg.members[module_path.split(".")[-1]]
            for export in module.exports or ():
                name = export if isinstance(export, str) else export.name
                if name.startswith("__") or name not in module.members:
                    continue
                target = module.members[name]
                final = target.final_target if isinstance(target, griffe.Alias) else target
                public.setdefault(name, f"{module_path}.{name}")
                by_canonical[final.path] = f"{module_path}.{name}"
                objects[f"{module_path}.{name}"] = final

        def documented_member(owner: str, name: str) -> str | None:
            """``owner.name`` if the reference renders it: a public member of the class itself."""
            cls = objects.get(owner)
            if cls is None or name.startswith("_") or name not in cls.members:
                return None
            return f"{owner}.{name}"

        for obj in walk(pkg):
            if obj.docstring is None or ":" not in obj.docstring.value:  # no role, no "::"
                continue
            cls = obj if obj.is_class else obj.parent
            owner = by_canonical.get(cls.path) if cls is not None and cls.is_class else None

            def resolve(target: str, owner: str | None = owner) -> str | None:
                head, _, rest = target.removeprefix("memcachier_async.").partition(".")
                if head in public:
                    return documented_member(public[head], rest) if rest else public[head]
                if owner is not None and not rest:
                    return documented_member(owner, head)
                return None

            obj.docstring.value = convert(literal_blocks(obj.docstring.value), resolve)
