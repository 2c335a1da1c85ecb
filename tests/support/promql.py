"""Just enough PromQL reading for tests: which metric names an expression selects.

A tokenizer, not a parser: strings, label matchers `{...}`, ranges `[...]` and the label lists of
by/without/on/ignoring/group_left/group_right are skipped; an identifier followed by `(` is a
function, the aggregation operators and keywords are not metrics; what is left names a metric.
Grafana's variables (`$service`, `${node}`, `$__rate_interval`) are replaced by sample values first,
so the same text is valid PromQL for promtool or a real Prometheus.
"""

from __future__ import annotations

import re

AGGREGATIONS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile".split()
)
KEYWORDS = frozenset("and or unless bool offset atan2 inf nan".split())
LABEL_LISTS = frozenset("by without on ignoring group_left group_right".split())
RATE_FUNCTIONS = frozenset({"rate", "irate", "increase"})
"""Functions meaningful only over a counter (or a histogram's _bucket/_sum/_count samples)."""
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS"})
"""Series Prometheus itself makes for every target (or alert), registered by no daemon."""

SAMPLE_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "service": "web",
    "node": "node1",
    "datasource": "prometheus",
}

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?(?:\d+(?:ms|[smhdwy]))*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<punct>=~|!~|!=|==|<=|>=|[-+*/%^(){}\[\],<>=@])
    """,
    re.VERBOSE,
)
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


class PromQLError(ValueError):
    pass


def substitute_variables(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace Grafana's template variables with sample values (unknown ones raise)."""
    table = SAMPLE_VARIABLES | (values or {})

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g is not None)
        if name not in table:
            raise PromQLError(f"unknown template variable ${name} in {expr!r}")
        return table[name]

    return _VARIABLE.sub(value, expr)


def tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text) pairs, whitespace and comments dropped; anything unknown raises."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise PromQLError(f"cannot read {expr[pos : pos + 20]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind not in ("space", "comment"):
            out.append((kind, match.group()))
        pos = match.end()
    return out


def _skip_group(toks: list[tuple[str, str]], i: int, open_: str, close: str) -> int:
    """Index just past the bracket that closes the one at toks[i] (== open_)."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j] == ("punct", open_):
            depth += 1
        elif toks[j] == ("punct", close):
            depth -= 1
            if depth == 0:
                return j + 1
    raise PromQLError(f"unbalanced {open_!r}")


def selectors(expr: str) -> list[tuple[str, str]]:
    """Each metric name `expr` selects, as written (with _bucket/_total/... suffixes), with the
    function or aggregation whose parentheses directly enclose it ("" at top level or in bare ones)."""
    toks = tokens(substitute_variables(expr))
    found: list[tuple[str, str]] = []
    enclosing: list[str] = []  # one entry per open "(": the function it belongs to, or ""
    pending = ""  # a function or aggregation name whose "(" is still to come
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ("", "")
        if (kind, text) == ("punct", "{"):
            i = _skip_group(toks, i, "{", "}")
            continue
        if (kind, text) == ("punct", "["):
            i = _skip_group(toks, i, "[", "]")
            continue
        if (kind, text) == ("punct", "("):
            enclosing.append(pending)
            pending = ""
        elif (kind, text) == ("punct", ")"):
            if not enclosing:
                raise PromQLError(f"unbalanced ')' in {expr!r}")
            enclosing.pop()
        elif kind == "ident":
            if text in LABEL_LISTS:
                i = _skip_group(toks, i + 1, "(", ")") if nxt == ("punct", "(") else i + 1
                continue
            if nxt == ("punct", "(") or text in AGGREGATIONS:
                pending = text
            elif text.lower() not in KEYWORDS:
                found.append((text, enclosing[-1] if enclosing else ""))
        i += 1
    if enclosing:
        raise PromQLError(f"unbalanced '(' in {expr!r}")
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects, as written (with _bucket/_total/... suffixes)."""
    return {name for name, _ in selectors(expr)}


def label_values_query(query: str) -> tuple[str, str]:
    """Grafana's `label_values(metric, label)` (or `label_values(metric{...}, label)`)."""
    match = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s*,\s*(\w+)\s*\)\s*", query)
    if match is None:
        raise PromQLError(f"not a label_values(metric, label) query: {query!r}")
    return match.group(1), match.group(3)
