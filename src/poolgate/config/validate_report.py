"""The text `poolgate validate` prints for a LoadResult."""

from __future__ import annotations

from poolgate.config.build import LoadResult


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "none"


def render_validation(result: LoadResult, strict: bool) -> tuple[str, int]:
    """(text to print, exit code): problems one per line, then a summary; 1 on any error
    (or any warning when `strict`)."""
    lines = [f"{p.severity}: {p}" for p in result.problems]
    errors, warnings = len(result.errors), len(result.warnings)
    lines.append(f"loaded: {_counts(dict(result.loaded))}")
    lines.append(f"skipped (not acted on): {_counts(dict(result.skipped))}")
    failed = errors > 0 or (strict and warnings > 0)
    verdict = "invalid" if failed else "valid"
    lines.append(f"{errors} error(s), {warnings} warning(s): {verdict}"
                 + (" (--strict: warnings are fatal)" if strict and warnings and not errors else ""))
    return "\n".join(lines), 1 if failed else 0
