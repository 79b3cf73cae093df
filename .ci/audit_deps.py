#!/usr/bin/env python3
"""Audit voiceengine's installed runtime dependencies against PyPI's vulnerability data.

A pip-audit equivalent that needs only the standard library and pypi.org (pip-audit needs
osv.dev, which CI cannot always reach):

1. Resolve the runtime dependency closure of the installed ``voiceengine`` distribution:
   its ``Requires-Dist`` recursively, with environment markers evaluated for this
   interpreter. The root's optional extras (``[test]``, ``[audio]``) are skipped; extras
   that a dependency itself requests (``foo[bar]``) are followed. When voiceengine is not
   installed (an in-place build), ``[project].dependencies`` of pyproject.toml is the root.
2. For each installed dependency, ask ``https://pypi.org/pypi/<name>/<version>/json``
   (its ``vulnerabilities`` apply to that version). Where that endpoint answers 404,
   ask ``/pypi/<name>/json``: its ``vulnerabilities`` describe the *latest* release only,
   so the installed version must be the latest -- anything else is a failure (we cannot
   vouch for it), as is every listed vulnerability that is not withdrawn, and a yanked
   installed release.

Prints a table (name, installed, latest, vulns, status). Exit status: 0 clean, 1 findings,
2 the audit could not run (network failure, missing dependency, bad metadata).

    python .ci/audit_deps.py [--dist voiceengine] [--pyproject pyproject.toml] [--timeout 20]
"""

from __future__ import annotations

import argparse
import json
import operator
import platform
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

PYPI = "https://pypi.org/pypi"
USER_AGENT = "voiceengine-audit-deps/1 (+stdlib urllib)"
_SETUP = 2  # exit status when the audit itself cannot run


class AuditError(Exception):
    """The audit could not be completed (exit status 2)."""


# --------------------------------------------------------------------------- names, versions


def canonical(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def version_key(version: str) -> tuple[Any, ...]:
    """A comparison key for release versions (enough for "is it the latest"; PEP 440-ish).

    ``1.3`` == ``1.3.0``; pre/dev releases sort before the release; a local part is ignored.
    """
    v = version.strip().lower().lstrip("v").split("+", 1)[0]
    m = re.match(r"^(?:(\d+)!)?(\d+(?:\.\d+)*)(?:[-_.]?(a|b|c|rc|alpha|beta|pre|preview)[-_.]?(\d*))?"
                 r"(?:[-_.]?(?:post|rev|r)[-_.]?(\d*))?(?:[-_.]?dev[-_.]?(\d*))?$", v)
    if not m:
        return (0, (), (9, 0), 0, (9, 0), version)
    epoch, release, pre_l, pre_n, post, dev = m.groups()
    nums = [int(x) for x in release.split(".")]
    while len(nums) > 1 and nums[-1] == 0:
        nums.pop()
    pre_rank = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}
    pre = (pre_rank[pre_l], int(pre_n or 0)) if pre_l else (9, 0)
    dev_key = (0, int(dev or 0)) if dev is not None else (9, 0)
    if dev is not None and not pre_l and post is None:
        pre = (-1, 0)  # 1.0.dev1 < 1.0a1
    return (int(epoch or 0), tuple(nums), pre, int(post or -1) if post is not None else -1, dev_key, "")


# --------------------------------------------------------------------------- requirements + markers


@dataclass(frozen=True)
class Requirement:
    name: str
    extras: frozenset[str]
    marker: str | None
    text: str


_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?\s*([^;]*?)\s*(?:;\s*(.*))?$")


def parse_requirement(text: str) -> Requirement:
    m = _REQ.match(text)
    if not m:
        raise AuditError(f"cannot parse requirement {text!r}")
    name, extras, _spec, marker = m.groups()
    extra_set = frozenset(canonical(e) for e in (extras or "").split(",") if e.strip())
    return Requirement(name=name, extras=extra_set, marker=(marker or "").strip() or None, text=text)


def marker_environment() -> dict[str, str]:
    """PEP 508 environment values of this interpreter."""
    impl = sys.implementation
    iver = f"{impl.version.major}.{impl.version.minor}.{impl.version.micro}"
    if impl.version.releaselevel != "final":
        iver += impl.version.releaselevel[0] + str(impl.version.serial)
    return {
        "implementation_name": impl.name,
        "implementation_version": iver,
        "os_name": __import__("os").name,
        "platform_machine": platform.machine(),
        "platform_python_implementation": platform.python_implementation(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


_TOKEN = re.compile(r"""\s*(?:(?P<str>'[^']*'|"[^"]*")|(?P<op>===|==|!=|<=|>=|~=|<|>|not\s+in\b|in\b)"""
                    r"""|(?P<paren>[()])|(?P<bool>and\b|or\b)|(?P<var>[A-Za-z_][A-Za-z0-9_.]*))""")
_VERSION_VARS = {"python_version", "python_full_version", "implementation_version", "platform_release"}


def _compare(op: str, left: str, right: str, *, versions: bool) -> bool:
    op = re.sub(r"\s+", " ", op)
    if op == "in":
        return left in right
    if op == "not in":
        return left not in right
    if op == "===":
        return left == right
    if versions and re.match(r"^\d", left) and re.match(r"^\d", right.rstrip("*").rstrip(".")):
        if op in ("==", "!=") and right.endswith(".*"):  # prefix match
            prefix = right[:-2].split(".")
            hit = left.split(".")[: len(prefix)] == prefix
            return hit if op == "==" else not hit
        if op == "~=":
            parts = right.split(".")
            upper = parts[:-1]
            return version_key(left) >= version_key(right) and left.split(".")[: len(upper)] == upper
        lk, rk = version_key(left), version_key(right)
    else:
        if op == "~=":
            raise AuditError(f"~= on a non-version marker value {right!r}")
        lk, rk = left, right  # type: ignore[assignment]
    ops: dict[str, Callable[[Any, Any], bool]] = {"==": operator.eq, "!=": operator.ne, "<": operator.lt,
                                                    "<=": operator.le, ">": operator.gt, ">=": operator.ge}
    return ops[op](lk, rk)


def evaluate_marker(marker: str, env: dict[str, str], extras: frozenset[str]) -> bool:
    """Evaluate a PEP 508 marker; ``extra`` is true for any name in ``extras``."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(marker):
        if marker[pos:].strip() == "":
            break
        m = _TOKEN.match(marker, pos)
        if not m or m.end() == pos:
            raise AuditError(f"cannot parse marker {marker!r} at {marker[pos:]!r}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    index = 0

    def peek() -> tuple[str, str] | None:
        return tokens[index] if index < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal index
        if index >= len(tokens):
            raise AuditError(f"marker ends early: {marker!r}")
        index += 1
        return tokens[index - 1]

    def value() -> tuple[str, str | None]:
        kind, text = take()
        if kind == "str":
            return text[1:-1], None
        if kind == "var":
            if text == "extra":
                return "", "extra"
            if text not in env:
                raise AuditError(f"unknown marker variable {text!r} in {marker!r}")
            return env[text], text
        raise AuditError(f"unexpected {text!r} in marker {marker!r}")

    def atom() -> bool:
        if peek() == ("paren", "("):
            take()
            result = expr()
            if take() != ("paren", ")"):
                raise AuditError(f"unbalanced parentheses in {marker!r}")
            return result
        left, lvar = value()
        kind, op = take()
        if kind != "op":
            raise AuditError(f"expected an operator in {marker!r}, got {op!r}")
        right, rvar = value()
        if "extra" in (lvar, rvar):
            other = right if lvar == "extra" else left
            hit = canonical(other) in extras
            return hit if op.strip() == "==" else (not hit if op.strip() == "!=" else False)
        versions = bool({lvar, rvar} & _VERSION_VARS)
        return _compare(op, left, right, versions=versions)

    def conjunction() -> bool:
        result = atom()
        while peek() == ("bool", "and"):
            take()
            rhs = atom()
            result = result and rhs
        return result

    def expr() -> bool:
        result = conjunction()
        while peek() == ("bool", "or"):
            take()
            rhs = conjunction()
            result = result or rhs
        return result

    result = expr()
    if index != len(tokens):
        raise AuditError(f"trailing tokens in marker {marker!r}")
    return result


# --------------------------------------------------------------------------- closure


@dataclass
class Dependency:
    name: str                      # as installed
    version: str
    required_by: set[str] = field(default_factory=set)


def root_requirements(dist_name: str, pyproject: Path | None) -> tuple[str, list[str]]:
    """(description, requirement strings) of the root, from the installed dist or pyproject."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        if pyproject is None or not pyproject.is_file():
            raise AuditError(f"{dist_name} is not installed and no pyproject.toml was found") from None
        import tomllib

        with pyproject.open("rb") as f:
            project = tomllib.load(f).get("project", {})
        return f"{pyproject} [project].dependencies ({dist_name} not installed)", list(project.get("dependencies", []))
    return f"installed {dist.metadata['Name']} {dist.version}", list(dist.requires or [])


def resolve(root_reqs: list[str], root_name: str) -> dict[str, Dependency]:
    env = marker_environment()
    found: dict[str, Dependency] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    # Markers are evaluated when a requirement is queued, with the extras its parent was
    # asked for: none for the root (its optional extras are not runtime dependencies).
    queue: list[tuple[Requirement, str]] = []
    for text in root_reqs:
        req = parse_requirement(text)
        if not req.marker or evaluate_marker(req.marker, env, frozenset()):
            queue.append((req, root_name))
    while queue:
        req, parent = queue.pop(0)
        key = canonical(req.name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise AuditError(f"{req.text!r} (required by {parent}) is not installed") from None
        dep = found.setdefault(key, Dependency(name=dist.metadata["Name"] or req.name, version=dist.version))
        dep.required_by.add(parent)
        if (key, req.extras) in seen:
            continue
        seen.add((key, req.extras))
        for text in dist.requires or []:
            child = parse_requirement(text)
            if child.marker and not evaluate_marker(child.marker, env, req.extras):
                continue
            queue.append((child, f"{dep.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}"))
    return found


# --------------------------------------------------------------------------- PyPI


def fetch(url: str, timeout: float, *, retries: int = 2) -> dict[str, Any] | None:
    """GET JSON; None on 404; AuditError on anything else after retries."""
    if not url.startswith(PYPI + "/"):
        raise AuditError(f"refusing to fetch {url!r}: only {PYPI} is queried")
    last: Exception | None = None
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
        try:
            # B310 (urlopen of arbitrary schemes) does not apply: fetch() only takes https://pypi.org URLs
            with urllib.request.urlopen(request, timeout=timeout) as response:  # nosec B310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            last = exc
            if exc.code < 500 and exc.code != 429:
                break
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            last = exc
        time.sleep(0.5 * (attempt + 1))
    raise AuditError(f"cannot query {url}: {last}")


@dataclass
class Result:
    name: str
    installed: str
    latest: str = "?"
    source: str = ""
    vulns: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def active_vulns(payload: dict[str, Any]) -> list[str]:
    out = []
    for vuln in payload.get("vulnerabilities") or []:
        if vuln.get("withdrawn"):
            continue
        ident = vuln.get("id") or "?"
        aliases = [a for a in vuln.get("aliases") or [] if a != ident]
        fixed = vuln.get("fixed_in") or []
        out.append(ident + (f" ({', '.join(aliases)})" if aliases else "")
                   + (f" fixed in {', '.join(fixed)}" if fixed else ""))
    return out


def audit(dep: Dependency, timeout: float) -> Result:
    result = Result(name=dep.name, installed=dep.version)
    name = canonical(dep.name)
    exact = fetch(f"{PYPI}/{name}/{dep.version}/json", timeout)
    if exact is not None:
        result.source = "version"
        result.vulns = active_vulns(exact)
        result.latest = (fetch(f"{PYPI}/{name}/json", timeout) or {}).get("info", {}).get("version", "?")
    else:
        project = fetch(f"{PYPI}/{name}/json", timeout)
        if project is None:
            result.problems.append(f"{dep.name} is not on PyPI: cannot audit it")
            return result
        result.source = "latest"
        result.latest = project.get("info", {}).get("version", "?")
        if version_key(dep.version) != version_key(result.latest):
            result.problems.append(
                f"{dep.name} {dep.version} is not the latest release ({result.latest}); PyPI only publishes "
                f"advisories for the latest release here, so {dep.version} cannot be vouched for: upgrade it")
        else:
            result.vulns = active_vulns(project)
            files = (project.get("releases") or {}).get(result.latest) or project.get("urls") or []
            if files and all(f.get("yanked") for f in files):
                result.problems.append(f"{dep.name} {dep.version} is yanked on PyPI")
    for vuln in result.vulns:
        result.problems.append(f"{dep.name} {dep.version}: {vuln}")
    return result


def print_table(results: list[Result]) -> None:
    rows = [("name", "installed", "latest", "vulns", "checked", "status")]
    for r in results:
        status = "ok" if not r.problems else ("VULNERABLE" if r.vulns else "FAIL")
        rows.append((r.name, r.installed, r.latest, str(len(r.vulns)),
                     {"version": "this version", "latest": "latest only"}.get(r.source, "-"), status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", default="voiceengine", help="the distribution whose runtime deps are audited")
    parser.add_argument("--pyproject", type=Path, default=Path(__file__).resolve().parent.parent / "pyproject.toml",
                        help="fallback root when the distribution is not installed")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per HTTP request")
    args = parser.parse_args(argv)
    try:
        where, reqs = root_requirements(args.dist, args.pyproject)
        deps = resolve(reqs, args.dist)
        print(f"runtime dependency closure of {where}: {len(deps)} distribution(s)")
        results = [audit(dep, args.timeout) for _, dep in sorted(deps.items())]
    except AuditError as exc:
        print(f"audit_deps: cannot complete the audit: {exc}", file=sys.stderr)
        return _SETUP
    print_table(results)
    problems = [p for r in results for p in r.problems]
    if problems:
        print(f"\n{len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print("\nno known vulnerabilities; every dependency checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
