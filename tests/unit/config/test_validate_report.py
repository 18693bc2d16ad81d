from __future__ import annotations

from poolgate.api.problems import Problem
from poolgate.config.build import LoadResult
from poolgate.config.validate_report import render_validation

WARNING = Problem("warning", "r.yaml", 1, 3, "HTTPRoute", "r", "not attached")
ERROR = Problem("error", "p.yaml", 2, 9, "InferencePool", "p", "spec.selector: bad")


def result(*problems: Problem) -> LoadResult:
    return LoadResult(None, problems, {"Gateway": 1, "HTTPRoute": 2}, {"Deployment": 3})


def test_clean_result_exits_zero_with_a_summary() -> None:
    text, code = render_validation(result(), strict=False)
    assert code == 0
    assert text.splitlines() == [
        "loaded: 1 Gateway, 2 HTTPRoute",
        "skipped (not acted on): 3 Deployment",
        "0 error(s), 0 warning(s): valid",
    ]


def test_warnings_pass_unless_strict() -> None:
    text, code = render_validation(result(WARNING), strict=False)
    assert code == 0
    assert text.splitlines()[0] == "warning: r.yaml:3 (doc 1, HTTPRoute/r): not attached"
    text, code = render_validation(result(WARNING), strict=True)
    assert code == 1
    assert text.endswith("1 warning(s): invalid (--strict: warnings are fatal)")


def test_errors_fail() -> None:
    text, code = render_validation(result(ERROR, WARNING), strict=False)
    assert code == 1
    assert "error: p.yaml:9 (doc 2, InferencePool/p): spec.selector: bad" in text
    assert text.endswith("1 error(s), 1 warning(s): invalid")
