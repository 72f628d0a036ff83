"""Any lme4 formula over a validated table: parsing, the model frame, the design and the fit.

One place builds a model frame for every model of the project (the ladder, the model builder,
``python -m core fit`` and the power simulation), with lme4's rules (Bates et al., 2015; R's
``model.frame`` / ``model.matrix``):

- **Names** a formula may use: the roles ``patient``, ``therapist``, ``session``, ``alliance``,
  ``symptoms``; ``time`` = session − the smallest session number in the data; for each measure
  ``m``: ``m_between`` (the patient's mean of ``m`` over the sessions where ``m`` was observed,
  minus the mean of the patient means) and ``m_within`` (``m`` minus the patient's mean); every other
  column of the file by its header (in backticks when it is not a plain name: ``\\`age (years)\\```).
  Also accepted: the header of a role's column (``mathach`` for ``--symptoms mathach``) and
  ``<header>_between`` / ``<header>_within`` for a measure's column, unless the file has a column of
  that name.
- **Types**: a column is numeric when every non-missing value reads as a number (decimal point or
  comma), otherwise categorical; levels sorted (code-point order), the first is the reference, and a
  term is named column + level (``sitenorth``) as lme4 names it.
- **Rows used**: those with a value for every variable the formula names (lme4's ``na.omit``); every
  other row is listed with its spreadsheet row number and the reason (the variables it lacks).
- **Operators**: ``+``, ``*``, ``:``, ``0 +`` / ``- 1``, parentheses, ``(x | g)``, ``(x || g)``
  (uncorrelated: ``(1 | g) + (0 + x | g)``), ``(x | a/b)`` (``(x | b:a) + (x | a)``); numeric terms
  ``I(expr)`` (``+ - * / ^``), ``log()``, ``exp()``, ``sqrt()``, ``abs()``, labelled as R deparses them
  (``I(time^2)``, ``log(age + 1)``). Terms are ordered as R orders them (main effects, then
  two-way interactions, …); a factor in a term is coded by contrasts (treatment) when the term without
  it is in the model before it, otherwise by indicators (R's rule, Chambers & Hastie 1992, p. 38).
  Random-effect terms are ordered by decreasing number of levels of their grouping factor, as lme4's
  ``mkReTrms`` orders them.
- **Collinearity**: a fixed-effect column that is a linear combination of earlier ones (pivoted QR
  with rank tolerance 1e-7, as lme4's ``chkRank.drop.cols``) is dropped and said in ``warnings``
  (``"fixed-effect model matrix is rank deficient so dropping 1 column / coefficient"``).
- **Fit**: REML (fixed effects, variances; Satterthwaite df, t-based p and 95% CI, as lmerTest, or
  with ``df_method="kr"`` Kenward–Roger's adjusted SEs and df as pbkrtest) and
  ML (log-likelihood, AIC, BIC) by the ``mixedlm`` engine; lme4's convergence checks on the REML fit
  (gradient and Hessian of the deviance by central differences, ``lme4:::checkConv``); Nakagawa's
  R² (Nakagawa, Johnson & Schielzeth, 2017) as ``performance::r2_nakagawa`` computes it. Nothing is
  printed: messages of the engine are collected in ``warnings``.

>>> parse_formula("y ~ a * b + (1 | g)").fixed_labels
('a', 'b', 'a:b')
"""
from __future__ import annotations

import contextlib
import io
import math
import re
import warnings as _warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.errors import ModelError
from core.i18n import _

ROLE_NAMES = ("patient", "therapist", "session", "alliance", "symptoms")
MEASURE_NAMES = ("alliance", "symptoms")
GROUP_ROLES = ("patient", "therapist")
#: lme4's rank tolerance for the fixed-effect model matrix (``chkRank.drop.cols``).
RANK_TOLERANCE = 1e-7
#: lme4's ``check.conv.grad`` and ``check.conv.hess`` tolerances and ``isSingular`` tolerance.
GRADIENT_TOLERANCE = 2e-3
HESSIAN_TOLERANCE = 1e-6
SINGULAR_TOLERANCE = 1e-4
#: A residual SD below this fraction of the outcome's SD: the model reproduces the outcome exactly (to
#: the rounding of its sums of squares, √ε ≈ 1.5e-8, with a margin): a perfectly linear course.
EXACT_FIT_RATIO = 1e-6
#: Cell texts read as missing in the file's other columns: the R reference's ``na.strings``
#: (``"" NA n/a N/A . -``) and spreadsheet error/NaN texts. Words such as "none" or "missing" stay
#: categories (a medication "None" is a level, as in R).
_MISSING = frozenset({"", "NA", "na", "n/a", "N/A", ".", "-", "NaN", "nan", "#N/A", "#NA"})


# ======================================================================================= parsing

@dataclass(frozen=True)
class RandomTerm:
    """One random-effect term ``(expr | group)``: its own intercept and terms, and the group."""

    group: str
    intercept: bool
    terms: tuple[tuple[str, ...], ...]
    text: str = ""

    @property
    def variables(self) -> list[str]:
        return list(dict.fromkeys(v for t in self.terms for v in t))


@dataclass(frozen=True)
class Formula:
    """A parsed lme4 formula: outcome, fixed terms (each a tuple of variables, R's order) and random terms."""

    text: str
    outcome: str
    intercept: bool
    fixed: tuple[tuple[str, ...], ...]
    random: tuple[RandomTerm, ...]
    #: Computed variables such as ``I(time^2)`` or ``log(age)``: label -> expression tree.
    computed: tuple[tuple[str, tuple], ...] = ()

    @property
    def fixed_labels(self) -> tuple[str, ...]:
        return tuple(":".join(t) for t in self.fixed)

    @property
    def variables(self) -> list[str]:
        """Every variable the formula names, outcome first (as model-frame columns; a computed
        variable such as ``I(time^2)`` is one column, computed from the names in it)."""
        names = [self.outcome] + [v for t in self.fixed for v in t]
        for r in self.random:
            names += r.variables + r.group.split(":")
        return list(dict.fromkeys(names))

    @property
    def data_names(self) -> list[str]:
        """The table's names the formula uses (R's ``all.vars``): inside computed variables too."""
        comp = dict(self.computed)
        out = []
        for v in self.variables:
            out += _expr_names(comp[v]) if v in comp else [v]
        return list(dict.fromkeys(out))


_TOKEN = re.compile(r"\s*(?:`([^`]+)`|([A-Za-z_.][A-Za-z0-9_.]*)|(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)"
                    r"|(\|\||[~+*:|()\-/^,=]))")
#: Functions a term may apply to numeric variables (R's names; ``I()`` protects arithmetic).
FUNCTIONS = {"I": None, "log": np.log, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "log10": np.log10,
             "log2": np.log2, "factor": None}
#: Functions of the outcome (``log(y) ~ …``): ``scale`` is (y − mean) / SD over the rows the model uses.
OUTCOME_FUNCTIONS = ("log", "sqrt", "scale", "log10", "log2", "exp")
#: The highest degree of ``poly(x, degree)``.
MAX_POLY_DEGREE = 6


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            rest = text[pos:].strip()
            if not rest:
                break
            raise ModelError(_("The formula cannot be read at '{text}': use names, +, *, :, 0 +, and random effects "
                               "such as (1 | patient) or (time | patient).").format(text=rest[:20]))
        quoted, name, number, op = m.groups()
        if quoted is not None:
            out.append(("name", quoted))
        elif name is not None:
            out.append(("name", name))
        elif number is not None:
            out.append(("number", number))
        else:
            out.append(("op", op))
        pos = m.end()
    return out


@dataclass
class _Part:
    """A parsed piece of a right-hand side: terms (frozensets), intercept flag, random terms."""

    terms: list[frozenset] = field(default_factory=list)
    intercept: bool | None = None
    random: list = field(default_factory=list)


class _Parser:
    def __init__(self, tokens, order: dict[str, int]):
        self.t = tokens
        self.i = 0
        self.order = order  # variable -> first appearance (R's variable order)
        self.computed: dict[str, tuple] = {}

    # arithmetic inside I(), log(), ...: + - (lowest), * /, unary -, ^ (right-associative)
    def arith(self):
        node = self._arith_term()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take()[1]
            node = ("bin", op, node, self._arith_term())
        return node

    def _arith_term(self):
        node = self._arith_unary()
        while self.peek() in (("op", "*"), ("op", "/")):
            op = self.take()[1]
            node = ("bin", op, node, self._arith_unary())
        return node

    def _arith_unary(self):
        if self.peek() == ("op", "-"):
            self.take()
            return ("neg", self._arith_unary())
        return self._arith_power()

    def _arith_power(self):
        base = self._arith_atom()
        if self.peek() == ("op", "^"):
            self.take()
            return ("bin", "^", base, self._arith_unary())
        return base

    def _arith_atom(self):
        kind, value = self.take()
        if kind == "number":
            return ("num", float(value))
        if kind == "name":
            if self.peek() == ("op", "(") and value in FUNCTIONS and value != "I":
                self.take("(")
                inner = self.arith()
                self.take(")")
                return ("call", value, inner)
            return ("var", value)
        if value == "(":
            inner = self.arith()
            self.take(")")
            return ("paren", inner)
        raise ModelError(_("The formula has '{text}' inside a function where a name or number was expected.").format(text=value))

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def take(self, value=None):
        tok = self.peek()
        if tok[0] is None or (value is not None and tok[1] != value):
            raise ModelError((_("The formula is incomplete: expected '{text}' near the end.") if value else
                              _("The formula is incomplete: expected more near the end.")).format(text=value))
        self.i += 1
        return tok

    def sum(self, allow_bar=False) -> _Part:
        part = _Part()
        sign = "+"
        if self.peek() == ("op", "-"):
            self.take()
            sign = "-"
        while True:
            piece = self.product()
            _merge(part, piece, sign)
            kind, value = self.peek()
            if kind == "op" and value in "+-" and value not in ("|", "||"):
                self.take()
                sign = value
                continue
            break
        return part

    def product(self) -> _Part:
        left = self.atom()
        while self.peek() in (("op", "*"), ("op", ":")):
            op = self.take()[1]
            right = self.atom()
            if left.random or right.random:
                raise ModelError(_("A random-effect term (… | …) cannot be multiplied; add it with +."))
            cross = [a | b for a in left.terms for b in right.terms]
            terms = (left.terms + right.terms + cross) if op == "*" else cross
            left = _Part(terms=list(dict.fromkeys(terms)))
        return left

    def atom(self) -> _Part:
        kind, value = self.take()
        if kind == "name" and value == "poly" and self.peek() == ("op", "("):
            return self._poly()
        if kind == "name" and self.peek() == ("op", "(") and value in FUNCTIONS:
            self.take("(")
            expr = self.arith()
            self.take(")")
            label = f"{value}({_deparse(expr)})"
            if value == "factor" and expr[0] != "var":
                raise ModelError(_("factor() takes one column, e.g. factor(session)."))
            self.computed[label] = ("call", value, expr)
            self.order.setdefault(label, len(self.order))
            return _Part(terms=[frozenset([label])])
        if kind == "name" and self.peek() == ("op", "("):
            raise ModelError(_("The function {name}() cannot be used in a formula here; use I(), log(), exp(), "
                               "sqrt() or abs(), or add the computed column to the file.").format(name=value))
        if kind == "name":
            self.order.setdefault(value, len(self.order))
            return _Part(terms=[frozenset([value])])
        if kind == "number":
            if value in ("0", "1"):
                return _Part(intercept=value == "1")
            raise ModelError(_("The number {number} cannot stand in a formula (only 0 or 1, for the intercept).").format(number=value))
        if value == "(":
            inner_order: dict[str, int] = {}
            start = self.i
            saved = self.order
            self.order = inner_order
            inner = self.sum()
            self.order = saved
            kind2, value2 = self.peek()
            if value2 in ("|", "||"):
                self.take()
                groups = self._groups()
                self.take(")")
                text = " ".join(v for _, v in self.t[start - 1:self.i])
                terms = _ordered_terms(inner.terms, inner_order)
                intercept = inner.intercept is not False
                randoms = []
                for group in groups:
                    if value2 == "||":
                        if intercept:
                            randoms.append(RandomTerm(group, True, (), text))
                        randoms += [RandomTerm(group, False, (t,), text) for t in terms]
                    else:
                        randoms.append(RandomTerm(group, intercept, tuple(terms), text))
                return _Part(random=randoms)
            self.take(")")
            for name in inner_order:
                self.order.setdefault(name, len(self.order))
            return inner
        if value in (",", "="):
            raise ModelError(_("The formula has '{text}' outside a function that takes several arguments (such as "
                               "poly(time, 2)).").format(text=value))
        raise ModelError(_("The formula has '{text}' where a name was expected.").format(text=value))

    def _poly(self) -> _Part:
        """``poly(x, degree)``: orthogonal polynomials of one numeric column, as R's ``poly``."""
        self.take("(")
        kind, var = self.take()
        if kind != "name" or self.peek() != ("op", ","):
            raise ModelError(_("poly() takes a column and a degree, e.g. poly(time, 2)."))
        self.take(",")
        kind, degree = self.take()
        if kind != "number" or not degree.isdigit() or not 1 <= int(degree) <= MAX_POLY_DEGREE:
            raise ModelError(_("The degree of poly() is a whole number from 1 to {largest}, e.g. poly(time, 2).").format(
                largest=MAX_POLY_DEGREE))
        if self.peek() == ("op", ","):
            raise ModelError(_("poly() here takes a column and a degree only (orthogonal polynomials, as R's "
                               "default); for raw powers write I(time^2)."))
        self.take(")")
        label = f"poly({_deparse(('var', var))}, {int(degree)})"
        self.computed[label] = ("poly", int(degree), ("var", var))
        self.order.setdefault(label, len(self.order))
        return _Part(terms=[frozenset([label])])

    def _group(self) -> str:
        kind, value = self.take()
        if kind != "name":
            raise ModelError(_("After | comes the grouping column, e.g. (1 | patient)."))
        names = [value]
        while self.peek() == ("op", ":"):
            self.take()
            names.append(self.take()[1])
        return ":".join(names)

    def _groups(self) -> list[str]:
        """``g``, ``a:b``, or nested ``a/b`` (lme4: ``(x | b:a) + (x | a)``)."""
        outer = self._group()
        if self.peek() != ("op", "/"):
            return [outer]
        self.take()
        inner = self._group()
        if self.peek() == ("op", "/"):
            raise ModelError(_("Write deeper nesting as separate terms, e.g. (1 | a) + (1 | b:a) + (1 | c:b:a)."))
        return [f"{inner}:{outer}", outer]


def _merge(part: _Part, piece: _Part, sign: str) -> None:
    if sign == "-":
        if piece.intercept is not None and not piece.terms:
            part.intercept = False
        for t in piece.terms:
            if t in part.terms:
                part.terms.remove(t)
        return
    for t in piece.terms:
        if t not in part.terms:
            part.terms.append(t)
    if piece.intercept is not None:
        part.intercept = piece.intercept if part.intercept is None or piece.intercept else part.intercept
        if piece.intercept is False:
            part.intercept = False
    part.random += piece.random


def _ordered_terms(terms: list[frozenset], order: dict[str, int]) -> list[tuple[str, ...]]:
    """R's term order: by degree (stable), variables within a term by first appearance."""
    labelled = [tuple(sorted(t, key=lambda v: order.get(v, 10**6))) for t in terms]
    return sorted(dict.fromkeys(labelled), key=len)


def parse_formula(text: str) -> Formula:
    """Parse ``OUTCOME ~ TERMS + (RANDOM | group)`` in lme4 notation (see the module docstring)."""
    if not isinstance(text, str) or "~" not in text:
        raise ModelError(_("A formula needs an outcome, a tilde and terms, e.g. symptoms ~ time + (1 | patient)."))
    tokens = _tokens(text)
    outcome_computed: dict[str, tuple] = {}
    if len(tokens) >= 6 and tokens[0][0] == "name" and tokens[1] == ("op", "(") and tokens[2][0] == "name" \
            and tokens[3] == ("op", ")") and tokens[4] == ("op", "~"):
        fn, column = tokens[0][1], tokens[2][1]
        if fn not in OUTCOME_FUNCTIONS:
            raise ModelError(_("The outcome can be a column or {functions} of a column; {name}() is not one of "
                               "them.").format(functions=", ".join(f"{f}()" for f in OUTCOME_FUNCTIONS), name=fn))
        outcome = f"{fn}({_deparse(('var', column))})"
        outcome_computed[outcome] = ("call", fn, ("var", column))
        rest = tokens[5:]
    elif len(tokens) >= 3 and tokens[0][0] == "name" and tokens[1] == ("op", "~"):
        outcome, rest = tokens[0][1], tokens[2:]
    elif tokens and tokens[0][0] == "name" and len(tokens) > 1 and tokens[1] == ("op", "("):
        raise ModelError(_("The outcome can be a column or {functions} of one column, e.g. log(symptoms) ~ time + "
                           "(1 | patient).").format(functions=", ".join(f"{f}()" for f in OUTCOME_FUNCTIONS)))
    else:
        raise ModelError(_("A formula starts with the outcome and a tilde, e.g. symptoms ~ time + (1 | patient)."))
    if not rest:
        raise ModelError(_("A formula needs terms after the tilde, e.g. symptoms ~ time + (1 | patient)."))
    order: dict[str, int] = {outcome: 0}
    parser = _Parser(rest, order)
    parser.computed.update(outcome_computed)
    part = parser.sum()
    if parser.i != len(parser.t):
        bad = parser.t[parser.i][1]
        if bad in (",", "="):
            raise ModelError(_("The formula has '{text}' outside a function that takes several arguments (such as "
                               "poly(time, 2)).").format(text=bad))
        raise ModelError(_("The formula cannot be read at '{text}'.").format(text=bad))
    if not part.random:
        raise ModelError(_("The formula has no random effect; add one such as (1 | patient)."))
    return Formula(text=" ".join(text.split()), outcome=outcome, intercept=part.intercept is not False,
                   fixed=tuple(_ordered_terms(part.terms, order)), random=tuple(part.random),
                   computed=tuple(parser.computed.items()))


def _number_text(x: float) -> str:
    """A number as R deparses it (15 significant digits, no trailing zeros)."""
    return f"{x:.15g}"


def _deparse(node) -> str:
    """An expression as R's ``deparse`` writes it: spaces around + - * /, none around ^."""
    kind = node[0]
    if kind == "num":
        return _number_text(node[1])
    if kind == "var":
        return node[1] if re.fullmatch(r"[A-Za-z.][A-Za-z0-9_.]*", node[1]) else f"`{node[1]}`"
    if kind == "paren":
        return f"({_deparse(node[1])})"
    if kind == "neg":
        return f"-{_deparse(node[1])}"
    if kind == "call":
        return f"{node[1]}({_deparse(node[2])})"
    op, a, b = node[1], _deparse(node[2]), _deparse(node[3])
    return f"{a}{op}{b}" if op in ("^", "/") else f"{a} {op} {b}"


def _expr_names(node) -> list[str]:
    kind = node[0]
    if kind == "poly":
        return _expr_names(node[2])
    if kind == "var":
        return [node[1]]
    if kind in ("paren", "neg"):
        return _expr_names(node[1])
    if kind == "call":
        return _expr_names(node[2])
    if kind == "bin":
        return _expr_names(node[2]) + _expr_names(node[3])
    return []


def _evaluate(node, values: dict[str, np.ndarray]) -> np.ndarray:
    kind = node[0]
    if kind == "num":
        return np.asarray(node[1], float)
    if kind == "var":
        return values[node[1]]
    if kind == "paren":
        return _evaluate(node[1], values)
    if kind == "neg":
        return -_evaluate(node[1], values)
    if kind == "call":
        inner = _evaluate(node[2], values)
        fn = FUNCTIONS[node[1]]
        with np.errstate(all="ignore"):
            return inner if fn is None else fn(inner)
    a, b = _evaluate(node[2], values), _evaluate(node[3], values)
    with np.errstate(all="ignore"):
        return {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power}[node[1]](a, b)


# ======================================================================================= frame

@dataclass(frozen=True)
class Column:
    """A variable of the model frame: values aligned with the table, numeric or categorical.

    ``missing_reason`` says why a value is missing: a Series of texts aligned with the table, a
    function of row positions returning the texts (computed only for the rows left out), or None
    (``"<name> missing"``). A grouping role (patient, therapist) is a pandas ``category`` column
    with its levels sorted, so that a model on millions of rows handles codes, not strings.
    """

    name: str
    values: pd.Series
    categorical: bool
    missing_reason: object = None

    def reasons(self, pos: np.ndarray) -> np.ndarray:
        """Why the value is missing, at the row positions ``pos``."""
        why = self.missing_reason
        if why is None:
            return np.full(len(pos), _("{measure} missing").format(measure=self.name), dtype=object)
        if callable(why):
            return np.asarray(why(pos), dtype=object)
        return why.iloc[pos].astype(str).to_numpy(dtype=object)


def group_codes(values: pd.Series) -> pd.Series:
    """A grouping column as a ``category`` column of text labels with its levels sorted (code-point
    order) and only the levels that occur: done once, it turns every later grouping into codes.

    >>> list(group_codes(pd.Series(["b", "a", "b"])).cat.categories)
    ['a', 'b']
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = values.cat.categories
        if cats.dtype == object or pd.api.types.is_string_dtype(cats.dtype):
            values = values.cat.remove_unused_categories()
            if values.cat.categories.is_monotonic_increasing:
                return values
        values = values.astype(str)
    codes, labels = pd.factorize(values.astype(str), sort=True)
    return pd.Series(pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object)),
                     index=values.index, name=values.name)


@dataclass(frozen=True)
class ModelFrame:
    """The rows one model uses (lme4's ``na.omit``) and the rows it leaves out with reasons.

    ``data``: one column per variable of the formula (numbers as float, categories as text) plus
    ``row`` (spreadsheet row); ``excluded``: ``row, reason`` for rows of the table that lack a
    variable; ``levels``: the sorted levels of each categorical variable among the rows used.
    """

    formula: Formula
    data: pd.DataFrame
    excluded: pd.DataFrame
    levels: dict[str, list[str]]
    #: Sentences for ``warnings``: a derived name the file uses for its own column (see
    #: :func:`derived_renames`).
    notes: tuple[str, ...] = ()
    #: ``poly(x, d)`` terms: label → (α, norm2) of R's ``poly`` on the rows used (its ``coefs``
    #: attribute), so that a new design (power's) is evaluated in the same basis (R's ``predict``).
    poly_coefs: dict = field(default_factory=dict)


def _typed_other_column(text: pd.Series) -> tuple[pd.Series, bool]:
    from core.intake.validation import parse_numbers

    if pd.api.types.is_numeric_dtype(text) and not pd.api.types.is_bool_dtype(text):
        values = pd.to_numeric(text, errors="coerce").astype(float)
        return values.where(np.isfinite(values)), False
    cells = text.astype("string").fillna("").str.strip()
    missing = cells.isin(_MISSING).to_numpy(dtype=bool, na_value=True)
    values, _missing, _text = parse_numbers(cells.where(~missing, ""))
    values = values.to_numpy(float)
    if np.isfinite(values[~missing]).all():
        out = pd.Series(values, index=text.index)
        out[missing] = np.nan
        return out, False
    out = cells.astype(object).where(~missing, None)
    return pd.Series(out.to_numpy(dtype=object), index=text.index), True


def frame_columns(data: pd.DataFrame, *, aliases: dict[str, str] | None = None,
                  role_headers: dict[str, str] | None = None,
                  cell_reasons: pd.DataFrame | None = None) -> dict:
    """The names a formula may use on ``data`` (a validated table), each as a lazy :class:`Column`.

    ``aliases`` maps extra names to existing ones (e.g. ``{"between": "alliance_between"}``);
    ``role_headers`` maps a role to its column header in the file (``{"symptoms": "mathach"}``),
    which makes the header and ``<header>_between`` / ``<header>_within`` usable names too.
    ``cell_reasons`` (aligned with ``data``) says why a measure's cell is missing.
    """
    makers: dict[str, callable] = {}
    present_roles = [r for r in ROLE_NAMES if r in data.columns]
    renamed = derived_renames(data, role_headers)

    def reason_for(measure):
        """Why a measure's value (and so its between and within parts) is missing, with the measure
        named in the interface language ("sin dato de alianza", not "sin dato de within")."""
        from core.intake.mapping import role_name

        if cell_reasons is not None and measure in getattr(cell_reasons, "columns", ()):
            def at(pos, measure=measure):
                r = cell_reasons[measure].reindex(data.index).iloc[pos].fillna("").astype(str).to_numpy(dtype=object)
                return np.where(r != "", r, _("{measure} missing").format(measure=role_name(measure)))
            return at
        return lambda pos, measure=measure: np.full(len(pos), _("{measure} missing").format(measure=role_name(measure)),
                                                    dtype=object)

    for role in present_roles:
        if role in GROUP_ROLES:
            makers[role] = (lambda role=role: Column(role, group_codes(data[role]), True))
        else:
            def make(role=role):
                values = pd.to_numeric(data[role], errors="coerce").astype(float)
                return Column(role, values, False, reason_for(role) if role in MEASURE_NAMES else None)
            makers[role] = make
    if "session" in data.columns:
        def make_time():
            s = pd.to_numeric(data["session"], errors="coerce").astype(float)
            return Column("time", s - s.min(), False)
        makers[renamed.get("time", "time")] = make_time
    for m in MEASURE_NAMES:
        if m not in data.columns or "patient" not in data.columns:
            continue

        def parts(m=m, memo={}):
            if m not in memo:  # between and within share the patients' means
                values = pd.to_numeric(data[m], errors="coerce").astype(float)
                by = values.groupby(data["patient"], sort=False, observed=True)
                mean = by.transform("mean")
                memo[m] = values, mean, by.mean().mean()
            return memo[m]

        def make_between(m=m):
            values, mean, grand = parts(m)
            why = (lambda pos, m=m: np.full(len(pos), _("{name} missing: this patient has no {measure} score").format(
                name=f"{m}_between", measure=m), dtype=object))
            return Column(renamed.get(f"{m}_between", f"{m}_between"), mean - grand, False, why)

        def make_within(m=m):
            values, mean, _grand = parts(m)
            return Column(renamed.get(f"{m}_within", f"{m}_within"), values - mean, False, reason_for(m))
        makers[renamed.get(f"{m}_between", f"{m}_between")] = make_between
        makers[renamed.get(f"{m}_within", f"{m}_within")] = make_within
    from core.intake.reading import ROW
    for col in data.columns:
        if col in ROLE_NAMES or col == ROW or col in makers:
            continue

        def make_other(col=col):
            values, categorical = _typed_other_column(data[col])
            return Column(col, values, categorical)
        makers[col] = make_other
    extra: dict[str, str] = {}
    for role, header in (role_headers or {}).items():
        if role in makers and header and header not in makers:
            extra[header] = role
            if role in MEASURE_NAMES:
                for part in ("between", "within"):
                    if f"{header}_{part}" not in makers:
                        extra[f"{header}_{part}"] = f"{role}_{part}"
    extra.update({k: v for k, v in (aliases or {}).items() if k not in makers and v in makers})
    for name, target in extra.items():
        makers[name] = (lambda name=name, target=target: _renamed(makers[target](), name))
    return makers


def derived_renames(data: pd.DataFrame, role_headers: dict[str, str] | None = None) -> dict[str, str]:
    """Derived names (``time``, ``<measure>_between``, ``<measure>_within``) that the file itself uses
    for a column (one of its other columns, or the header of a role's column such as a session column
    named ``time``), each with the name the derived variable takes instead: ``<name>_derived``
    (``_derived2``, … if that is taken too). In a formula the name is then the file's column, as in R.

    >>> derived_renames(pd.DataFrame({"patient": [], "session": [], "time": []}))
    {'time': 'time_derived'}
    >>> derived_renames(pd.DataFrame({"patient": [], "session": []}), {"session": "time"})
    {'time': 'time_derived'}
    """
    from core.intake.reading import ROW

    taken = {str(c) for c in data.columns if c not in ROLE_NAMES and c != ROW}
    taken |= {h for r, h in (role_headers or {}).items() if h and r in data.columns and h != r}
    derived = (["time"] if "session" in data.columns else []) + \
        [f"{m}_{part}" for m in MEASURE_NAMES if m in data.columns and "patient" in data.columns
         for part in ("between", "within")]
    out = {}
    for name in derived:
        if name in taken:
            new, k = f"{name}_derived", 2
            while new in taken:
                new, k = f"{name}_derived{k}", k + 1
            out[name] = new
    return out


def derived_rename_notes(formula: "Formula", renames: dict[str, str]) -> list[str]:
    """The sentences that say which name is the file's column and which the derived variable's, for
    the names the formula uses."""
    used = set(formula.data_names)
    what = {"time": _("session − first session")}
    notes = []
    for name, new in renames.items():
        if name in used or new in used:
            measure, _sep, part = name.rpartition("_")
            meaning = what.get(name) or (_("the patient's mean of {measure}, centred").format(measure=measure)
                                         if part == "between" else
                                         _("{measure} minus the patient's mean").format(measure=measure))
            notes.append(_("The file has its own column '{name}', so '{name}' in the formula is that column; the "
                           "derived variable ({meaning}) is '{new}'.").format(name=name, meaning=meaning, new=new))
    return notes


def _renamed(column: Column, name: str) -> Column:
    return Column(name, column.values, column.categorical, column.missing_reason)


def poly_coefficients(x: np.ndarray, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """R's ``poly(x, degree)`` ``coefs``: the recurrence's centres α₁…α_d and squared norms
    (norm2 = (1, n, ‖p₁‖², …, ‖p_d‖²)) of the monic orthogonal polynomials on the values ``x``
    (Stieltjes' procedure; R computes the same polynomials by a QR decomposition)."""
    x = np.asarray(x, float)
    if len(np.unique(x)) <= degree:
        raise ModelError(_("poly() of degree {degree} needs more than {degree} different values; this column has "
                           "{k}.").format(degree=degree, k=len(np.unique(x))))
    alpha = np.empty(degree)
    norm2 = [1.0, float(len(x))]
    prev, cur = np.zeros_like(x), np.ones_like(x)
    for j in range(degree):
        alpha[j] = float(np.sum(x * cur * cur) / norm2[-1])
        nxt = (x - alpha[j]) * cur - (norm2[-1] / norm2[-2]) * prev if j else (x - alpha[j]) * cur
        prev, cur = cur, nxt
        norm2.append(float(cur @ cur))
    return alpha, np.array(norm2)


def poly_columns(x: np.ndarray, coefs: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """The columns of ``poly(x, d)`` for the values ``x`` with R's ``coefs`` (``predict.poly``).

    >>> alpha, norm2 = poly_coefficients(np.arange(1.0, 6.0), 2)
    >>> [np.round(c, 4).tolist() for c in poly_columns(np.arange(1.0, 6.0), (alpha, norm2))]  # R: poly(1:5, 2)
    [[-0.6325, -0.3162, 0.0, 0.3162, 0.6325], [0.5345, -0.2673, -0.5345, -0.2673, 0.5345]]
    """
    alpha, norm2 = coefs
    x = np.asarray(x, float)
    degree = len(alpha)
    Z = [np.ones_like(x), x - alpha[0]]
    for i in range(1, degree):
        Z.append((x - alpha[i]) * Z[i] - (norm2[i + 1] / norm2[i]) * Z[i - 1])
    return [Z[k] / math.sqrt(norm2[k + 1]) for k in range(1, degree + 1)]


def build_model_frame(data: pd.DataFrame, formula: Formula | str, *, aliases: dict[str, str] | None = None,
                      role_headers: dict[str, str] | None = None,
                      cell_reasons: pd.DataFrame | None = None, poly_coefs: dict | None = None) -> ModelFrame:
    """The model frame of ``formula`` on ``data``: typed columns, rows used, rows left out with reasons."""
    from core.intake.reading import ROW

    formula = parse_formula(formula) if isinstance(formula, str) else formula
    makers = frame_columns(data, aliases=aliases, role_headers=role_headers, cell_reasons=cell_reasons)
    columns: dict[str, Column] = {}
    computed = dict(formula.computed)
    base: dict[str, Column] = {}
    for name in formula.data_names:
        if name in makers and name not in base:
            base[name] = makers[name]()
    for label, expr in computed.items():
        names = _expr_names(expr)
        for name in names:
            if name not in makers:
                raise ModelError(_("The formula names '{name}' in {term}, which is not a role, a derived variable or a "
                                   "column of this file.").format(name=name, term=label))
            if base[name].categorical and expr[1] != "factor":
                raise ModelError(_("{term} needs numbers, but '{name}' is a text column.").format(term=label, name=name))
        if expr[0] == "poly" or (expr[0] == "call" and expr[1] == "scale"):
            # the column itself; poly() is expanded in the design, scale() standardised on the rows used
            col = base[names[0]]
            makers[label] = (lambda label=label, col=col: Column(label, col.values.astype(float), False,
                                                                 col.missing_reason))
            continue
        if expr[1] == "factor":  # the column's values as categories (numbers as R writes them)
            col = base[names[0]]
            vals = col.values.astype(object) if col.categorical else col.values.map(
                lambda x: None if pd.isna(x) else _number_text(float(x)))
            why = col.missing_reason if col.missing_reason is not None else \
                (lambda pos, n=names[0]: np.full(len(pos), _("{measure} missing").format(measure=n), dtype=object))
            makers[label] = (lambda label=label, vals=vals, why=why: Column(label, vals, True, why))
            continue
        values = _evaluate(expr, {n: base[n].values.to_numpy(float) for n in names})
        values = np.broadcast_to(np.asarray(values, float), (len(data),)).copy()
        if label == formula.outcome:  # log(y), sqrt(y): R would stop on -Inf/NaN in the response
            source = base[names[0]].values.to_numpy(float)
            lost = np.isfinite(source) & ~np.isfinite(values)
            if lost.any():
                raise ModelError(_("{term} cannot be taken of {n} value(s) of {name} (e.g. {value:g}); use values "
                                   "where it is defined, or another transformation.").format(
                    term=label, n=int(lost.sum()), name=names[0], value=float(source[lost][0])))
        values[~np.isfinite(values)] = np.nan

        def why(pos, label=label, names=tuple(names)):
            out = np.full(len(pos), _("{measure} missing").format(measure=label), dtype=object)
            for name in reversed(names):  # the first variable that is missing names the reason
                c = base[name]
                if c.missing_reason is not None:
                    absent = c.values.isna().to_numpy()[pos]
                    if absent.any():
                        out[absent] = c.reasons(pos[absent])
            return out
        makers[label] = (lambda label=label, values=values, why=why:
                         Column(label, pd.Series(values, index=data.index), False, why))
    for name in formula.variables:
        if name not in makers:
            usable = [k for k in makers if k not in ("row",)]
            raise ModelError(_("The formula names '{name}', which is not a role, a derived variable or a column of "
                               "this file. Usable names: {names}.").format(name=name, names=", ".join(usable)))
        columns[name] = base[name] if name in base else makers[name]()
    missing = {name: c.values.isna().to_numpy() for name, c in columns.items()}
    bad = np.logical_or.reduce(list(missing.values())) if missing else np.zeros(len(data), bool)
    rows = data[ROW].to_numpy() if ROW in data.columns else np.arange(len(data)) + 2
    bad_pos = np.flatnonzero(bad)
    # the reasons of the rows left out: each variable's reason where it is missing, joined with
    # "; " in the formula's order, a text given twice said once
    texts = np.full(len(bad_pos), "", dtype=object)
    for name, c in columns.items():
        hit = np.flatnonzero(missing[name][bad_pos])
        if not len(hit):
            continue
        why = c.reasons(bad_pos[hit]).astype(str).astype(object)
        first = texts[hit] == ""
        texts[hit[first]] = why[first]
        for k, text in zip(hit[~first], why[~first]):  # a second missing variable in the same row
            if text not in texts[k].split("; "):
                texts[k] = f"{texts[k]}; {text}"
    excluded = pd.DataFrame({"row": rows[bad].astype(int), "reason": pd.array(texts, dtype=object)})
    keep = None if not len(bad_pos) else np.flatnonzero(~bad)

    def kept(series: pd.Series) -> pd.Series:
        values = series.reset_index(drop=True)
        return values if keep is None else values.iloc[keep].reset_index(drop=True)

    used = pd.DataFrame({name: kept(c.values) for name, c in columns.items()})
    for role in GROUP_ROLES:  # carried along for counts (not a variable of na.omit unless named)
        if role not in used and role in data.columns:
            used[role] = kept(group_codes(data[role]))
    used[ROW] = (rows if keep is None else rows[keep]).astype(int)
    levels = {}
    for name, c in columns.items():
        if c.categorical and isinstance(used[name].dtype, pd.CategoricalDtype):
            used[name] = used[name].cat.remove_unused_categories()
            levels[name] = used[name].cat.categories
        elif c.categorical:
            used[name] = used[name].astype(str)
            found = pd.unique(used[name].to_numpy(dtype=object))
            numeric_factor = name.startswith("factor(") and name in computed and \
                not base[_expr_names(computed[name])[0]].categorical
            levels[name] = sorted(found, key=float) if numeric_factor else sorted(found)
        else:
            used[name] = used[name].astype(float)
    if used.empty:
        first = excluded["reason"].iloc[0] if len(excluded) else _("no rows")
        raise ModelError(_("No row has a value for every variable of this model (first row left out: {reason}).").format(
            reason=first))
    if computed.get(formula.outcome, ("",))[:2] == ("call", "scale"):
        y = used[formula.outcome].to_numpy(float)
        sd = float(np.std(y, ddof=1)) if len(y) > 1 else 0.0
        used[formula.outcome] = (y - y.mean()) / sd if sd > 0 else y - y.mean()
    coefs = {}
    for label, expr in computed.items():
        if expr[0] == "poly" and label in used:
            coefs[label] = (poly_coefs or {}).get(label) or poly_coefficients(used[label].to_numpy(float), expr[1])
    notes = tuple(derived_rename_notes(formula, derived_renames(data, role_headers)))
    return ModelFrame(formula=formula, data=used, excluded=excluded, levels=levels, notes=notes, poly_coefs=coefs)


# ======================================================================================= design

def _coding(terms: list[tuple[str, ...]], intercept: bool, categorical: set[str]) -> list[dict[str, str]]:
    """For each term and each factor in it: "contrasts" or "indicators" (R's ``TermCode`` rule)."""
    out = []
    first_factor_done = intercept
    for k, term in enumerate(terms):
        codes = {}
        for v in term:
            if v not in categorical:
                continue
            rest = set(term) - {v}
            if not rest:
                code = "contrasts"
            else:
                code = "indicators"
                for prev in terms[:k]:
                    if rest <= set(prev):
                        code = "contrasts"
                        break
            codes[v] = code
        if not first_factor_done:
            for v in term:
                if v in categorical:
                    codes[v] = "indicators"
                    first_factor_done = True
                    break
        out.append(codes)
    return out


def _term_columns(frame: ModelFrame, terms, intercept: bool) -> tuple[list[np.ndarray], list[str]]:
    data = frame.data
    categorical = set(frame.levels)
    columns, names = ([np.ones(len(data))], ["(Intercept)"]) if intercept else ([], [])
    for term, codes in zip(terms, _coding(list(terms), intercept, categorical)):
        cols, labels = [None], [""]  # None: a column of ones, not multiplied out
        for v in term:  # the first variable varies fastest, as in R
            if v in categorical:
                levels = frame.levels[v]
                if len(levels) < 2:
                    raise ModelError(_("'{name}' has only one value ('{value}') in the rows this model uses, so it "
                                       "cannot be a predictor.").format(name=v, value=levels[0] if len(levels) else ""))
                use = levels[1:] if codes[v] == "contrasts" else levels
                values = data[v].to_numpy()
                v_cols = [(values == lev).astype(float) for lev in use]
                v_labels = [f"{v}{lev}" for lev in use]
            elif v in frame.poly_coefs:
                v_cols = poly_columns(data[v].to_numpy(float), frame.poly_coefs[v])
                v_labels = [f"{v}{k}" for k in range(1, len(v_cols) + 1)]
            else:
                v_cols = [data[v].to_numpy(float)]
                v_labels = [v]
            cols = [vc if c is None else c * vc for vc in v_cols for c in cols]
            labels = [f"{a}:{b}" if a else b for b in v_labels for a in labels]
        columns += [np.ones(len(data)) if c is None else c for c in cols]
        names += labels
    return columns, names


def drop_collinear(X: np.ndarray, tol: float = RANK_TOLERANCE) -> list[int]:
    """Indices of columns to keep: a column is dropped when, after removing its projection on the
    columns kept before it, less than ``tol`` of its norm remains (R's LINPACK ``dqrdc2`` limited
    pivoting, used by lme4's ``chkRank.drop.cols``: later columns of a linear combination go).

    First a screen on X'X (p × p, no copy of X): when every column keeps more than 1e-3 of its norm
    after the columns before it (the Cholesky factor of the scaled X'X), every column is kept;
    only a design near that edge is checked column by column on X itself (Gram–Schmidt)."""
    n, p = X.shape
    norms = np.sqrt(np.einsum("ij,ij->j", X, X))
    if np.all(norms > 0):
        gram = (X.T @ X) / np.outer(norms, norms)
        try:
            rest = np.diag(np.linalg.cholesky(gram))  # each column's residual norm / its norm
            if np.all(rest > 1e-3):
                return list(range(p))
        except np.linalg.LinAlgError:
            pass
    keep: list[int] = []
    Q = np.empty((n, p))  # orthonormal basis of the kept columns, filled column by column
    for j in range(p):
        col = np.asarray(X[:, j], float)
        norm = np.linalg.norm(col)
        if norm == 0:
            continue
        basis = Q[:, :len(keep)]
        resid = col - basis @ (basis.T @ col)
        resid -= basis @ (basis.T @ resid)  # re-orthogonalise once for accuracy
        rest = np.linalg.norm(resid)
        if rest < tol * norm:
            continue
        Q[:, len(keep)] = resid / rest
        keep.append(j)
    return keep


@dataclass(frozen=True)
class RandomBlock:
    """The columns of one random-effect term and its grouping factor: ``codes`` (the group of each
    row, 0 … n_levels − 1) index ``labels`` (the group labels, sorted as R sorts a factor's levels)."""

    group: str
    columns: list[np.ndarray]
    names: list[str]
    codes: np.ndarray
    labels: pd.Index
    n_levels: int

    @property
    def levels(self) -> np.ndarray:
        """The group label of each row (text)."""
        return np.asarray(self.labels, dtype=object)[self.codes]


@dataclass(frozen=True)
class Design:
    """Fixed-effect matrix (after dropping collinear columns), its names, the dropped names, random blocks."""

    y: np.ndarray
    X: np.ndarray
    names: list[str]
    dropped: list[str]
    blocks: list[RandomBlock]


def build_design(frame: ModelFrame) -> Design:
    """Model matrices of a model frame with lme4's names, coding, rank handling and term order."""
    f = frame.formula
    if f.outcome in frame.levels:
        raise ModelError(_("The outcome '{name}' is not a number in every row, so a linear mixed model cannot "
                           "use it.").format(name=f.outcome))
    cols, names = _term_columns(frame, f.fixed, f.intercept)
    X = np.column_stack(cols) if cols else np.empty((len(frame.data), 0))
    del cols
    keep = drop_collinear(X) if X.shape[1] else []
    dropped = [n for i, n in enumerate(names) if i not in keep]
    if len(keep) < X.shape[1]:
        X = X[:, keep]
    names = [names[i] for i in keep]
    blocks = []
    for r in f.random:
        rcols, rnames = _term_columns(frame, r.terms, r.intercept)
        if not rcols:
            raise ModelError(_("The random term ({term}) has no effect in it.").format(term=r.text))
        g = frame.data[r.group.split(":")].astype(str).agg(":".join, axis=1) if ":" in r.group \
            else frame.data[r.group]
        g = group_codes(g)
        blocks.append(RandomBlock(r.group, rcols, rnames, g.cat.codes.to_numpy(np.int64), g.cat.categories,
                                  len(g.cat.categories)))
    nl = [b.n_levels for b in blocks]
    if any(b > a for a, b in zip(nl, nl[1:])):  # lme4: rev(order(nl)) when any(diff(nl) > 0)
        order = list(reversed(sorted(range(len(nl)), key=lambda i: nl[i])))
        blocks = [blocks[i] for i in order]
    return Design(y=frame.data[f.outcome].to_numpy(float), X=X, names=names, dropped=dropped, blocks=blocks)


def check_design(design: Design) -> None:
    """lme4's stopping checks, in plain words: grouping factors with more than one level and fewer
    levels than observations; fewer random effects than observations per term."""
    n = len(design.y)
    for b in design.blocks:
        if b.n_levels < 2:
            raise ModelError(_("The grouping column '{group}' has a single value in the rows this model uses; "
                               "a random effect needs at least two groups.").format(group=b.group))
        if b.n_levels >= n:
            raise ModelError(_("Every row is its own '{group}' group ({groups} groups, {rows} rows), so "
                               "differences between groups cannot be told apart from the residual. The model "
                               "needs groups with two or more rows.").format(group=b.group, groups=b.n_levels, rows=n))
        q = b.n_levels * len(b.columns)
        if n <= q:
            raise ModelError(_("The model has more random effects than rows for ({term}) ({q} random effects, "
                               "{rows} rows): the variances cannot be identified. Use fewer random effects, e.g. a "
                               "random intercept only.").format(term=f"{' + '.join(b.names)} | {b.group}", q=q, rows=n))
    if np.nanstd(design.y) == 0:
        raise ModelError(_("The outcome has the same value in every row this model uses: there is nothing to model."))


# ======================================================================================= fit

@dataclass(frozen=True)
class FormulaFit:
    """A fitted formula: the contract's report values and the engine's fits.

    ``fixed``: ``term, estimate, se, df, t, p, ci_low, ci_high`` (REML; Satterthwaite; t-based);
    ``variance``: rows ``group, term1, term2, vcov`` as lme4's ``as.data.frame(VarCorr())``;
    ``reml`` / ``ml``: the engine's fitted objects (``mixedlm`` results, on the engine data
    ``engine_data`` with the engine formula ``engine_formula``; the engine's column ``x<i>`` is the
    fixed effect ``names[i]``; or :class:`core.stats.profiled.ProfiledFit`, which offers the same
    ``theta``, ``beta``, ``sigma``, ``logLik()``, ``vcov()``, ``ranef()``, ``fitted()``,
    ``residuals()`` and ``formula``), for reuse (e.g. simulation from the fitted model).
    """

    formula: str
    frame: ModelFrame
    design: Design
    fixed: pd.DataFrame
    variance: list[dict]
    loglik_reml: float
    loglik_ml: float | None
    n_params_ml: int | None
    aic: float | None
    bic: float | None
    r2_marginal: float | None
    r2_conditional: float | None
    converged: bool
    singular: bool
    warnings: tuple[str, ...]
    reml: object = field(repr=False, default=None)
    ml: object = field(repr=False, default=None)
    engine_formula: str = ""
    fixed_cov: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0)))
    #: ``"profiled"`` (:mod:`core.stats.profiled`, one grouping factor or two nested ones) or ``"mixedlm"``.
    engine: str = "mixedlm"
    #: How ``fixed`` got its df, SEs and p: ``"satterthwaite"`` (lmerTest) or ``"kr"`` (pbkrtest's
    #: Kenward–Roger; SEs from the adjusted covariance, which is then ``fixed_cov``).
    df_method: str = "satterthwaite"

    @property
    def engine_data(self) -> pd.DataFrame:
        """The design as the plain table the mixedlm engine reads (see :func:`engine_inputs`)."""
        return engine_inputs(self.design)[0]

    @property
    def n_observations(self) -> int:
        return len(self.frame.data)

    @property
    def n_patients(self) -> int | None:
        return int(self.frame.data["patient"].nunique()) if "patient" in self.frame.data else None

    @property
    def excluded(self) -> pd.DataFrame:
        return self.frame.excluded

    def excluded_records(self) -> list[dict]:
        return [{"row": int(r), "reason": str(t)} for r, t in zip(self.excluded["row"], self.excluded["reason"])]

    def to_dict(self) -> dict:
        """The contract's keys of ``python -m core fit`` (without the validation's excluded rows)."""
        fixed = {r["term"]: {k: r[k] for k in ("estimate", "se", "df", "t", "p", "ci_low", "ci_high")}
                 for r in self.fixed.to_dict("records")}
        return {
            "formula": self.formula, "n_observations": self.n_observations, "n_patients": self.n_patients,
            "excluded_rows": self.excluded_records(), "fixed": fixed, "variance": self.variance,
            "loglik_reml": self.loglik_reml, "loglik_ml": self.loglik_ml, "n_params_ml": self.n_params_ml,
            "aic": self.aic, "bic": self.bic, "r2_marginal": self.r2_marginal,
            "r2_conditional": self.r2_conditional, "converged": self.converged, "singular": self.singular,
            "warnings": list(self.warnings), "dropped_terms": list(self.design.dropped),
            "df_method": self.df_method,
        }


def engine_formula_of(design: Design) -> str:
    """The engine formula of :func:`engine_inputs` (without building its table)."""
    intercept = bool(design.names) and design.names[0] == "(Intercept)"
    rhs = ["1" if intercept else "0"] + [f"x{i}" for i in range(len(design.names)) if not (i == 0 and intercept)]
    for b, block in enumerate(design.blocks):
        has_int = block.names[0] == "(Intercept)"
        inner = (["1"] if has_int else ["0"]) + [f"z{b}_{j}" for j in range(len(block.names))
                                                 if not (j == 0 and has_int)]
        rhs.append(f"({' + '.join(inner)} | g{b})")
    return "y ~ " + " + ".join(rhs)


def engine_inputs(design: Design) -> tuple[pd.DataFrame, str]:
    """The design as a plain table and formula for the engine (columns ``y``, ``x<i>``, ``z<b>_<j>``, ``g<b>``)."""
    cols = {"y": design.y}
    fixed = []
    intercept = bool(design.names) and design.names[0] == "(Intercept)"
    for i, name in enumerate(design.names):
        if i == 0 and intercept:
            continue
        cols[f"x{i}"] = design.X[:, i]
        fixed.append(f"x{i}")
    rhs = ["1" if intercept else "0"] + fixed
    for b, block in enumerate(design.blocks):
        cols[f"g{b}"] = block.levels
        inner = []
        has_int = block.names[0] == "(Intercept)"
        for j, (col, name) in enumerate(zip(block.columns, block.names)):
            if j == 0 and has_int:
                continue
            cols[f"z{b}_{j}"] = col
            inner.append(f"z{b}_{j}")
        inner = (["1"] if has_int else ["0"]) + inner
        rhs.append(f"({' + '.join(inner)} | g{b})")
    return pd.DataFrame(cols), "y ~ " + " + ".join(rhs)


def _engine_fit(data: pd.DataFrame, formula: str, reml: bool):
    import mixedlm
    from mixedlm.models.control import LmerControl

    control = LmerControl(check_rankX="ignore", check_scaleX="ignore", check_nlev_gtreq_5="ignore",
                          check_nlev_gtr_1="ignore")
    out = io.StringIO()
    with _warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out):
        _warnings.simplefilter("always")
        try:
            result = mixedlm.lmer(formula, data, REML=reml, control=control)
        except (RuntimeError, ValueError, np.linalg.LinAlgError, ArithmeticError) as err:
            if re.search(r"finite|\bnan\b|\binf|theta", str(err), re.I):  # never an engine message
                raise ModelError(_("The model could not be fitted: the estimation met numbers that are not "
                                   "finite; check the data for extreme values.")) from None
            raise ModelError(_("The model could not be fitted: {error}").format(error=err)) from None
    messages = [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
    messages += [line for line in out.getvalue().splitlines() if line.strip()]
    return result, messages


def t_tests(est: np.ndarray, se: np.ndarray, df: np.ndarray, names: list[str]) -> pd.DataFrame:
    """The fixed-effects table: t = estimate / SE, two-sided p and 95% CI from the t distribution
    with ``df`` (``scipy.special.stdtr``/``stdtrit``, the functions behind ``scipy.stats.t``)."""
    from scipy.special import stdtr, stdtrit

    est, se, df = (np.asarray(a, float) for a in (est, se, df))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = est / se
        q = stdtrit(df, 0.975)
        return pd.DataFrame({"term": ["intercept" if n == "(Intercept)" else n for n in names],
                             "estimate": est, "se": se, "df": df, "t": t,
                             "p": 2 * stdtr(df, -np.abs(t)),
                             "ci_low": est - q * se, "ci_high": est + q * se})


def _fixed_table(result, names: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    out = io.StringIO()
    with _warnings.catch_warnings(), contextlib.redirect_stdout(out):
        _warnings.simplefilter("ignore")
        tidy = result.tidy(conf_int=False, ddf_method="Satterthwaite")
    tidy = tidy[tidy["effect"] == "fixed"]
    table = t_tests(tidy["estimate"].to_numpy(float), tidy["std.error"].to_numpy(float),
                    tidy["df"].to_numpy(float), names)
    return table, np.asarray(result.vcov(), float)


def _profiled_fixed_table(result, names: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    from core.stats.profiled import satterthwaite_df

    cov = result.vcov()
    return t_tests(result.beta, np.sqrt(np.diag(cov)), satterthwaite_df(result), names), cov


def random_effects_matrix(design: Design):
    """Z of a design as a scipy sparse matrix in lme4's column order (term by term, group by group,
    the term's effects within a group) and the (q, groups) of each term."""
    import scipy.sparse as sp

    n = len(design.y)
    parts, structure = [], []
    for b in design.blocks:
        q = len(b.columns)
        rows = np.repeat(np.arange(n), q)
        cols = (b.codes[:, None] * q + np.arange(q)[None, :]).ravel()
        values = np.column_stack([np.asarray(c, float) for c in b.columns]).ravel()
        parts.append(sp.csc_matrix((values, (rows, cols)), shape=(n, q * b.n_levels)))
        structure.append((q, b.n_levels))
    return sp.hstack(parts).tocsc(), structure


#: Methods for the fixed effects' df: lmerTest's Satterthwaite, or Kenward–Roger as pbkrtest.
DF_METHODS = ("satterthwaite", "kr")


def kenward_roger_table(result, design: Design) -> tuple[pd.DataFrame, np.ndarray]:
    """The fixed-effects table with Kenward–Roger's adjusted SEs and df (lmerTest's
    ``summary(ddf = "Kenward-Roger")``, pbkrtest's ``vcovAdj`` and ``Lb_ddf``) and the adjusted
    covariance, for a REML fit (:mod:`core.stats.kenward_roger`)."""
    from core.stats.kenward_roger import KenwardRogerError, kenward_roger

    Z, structure = random_effects_matrix(design)
    try:
        kr = kenward_roger(Z, design.X, structure, np.asarray(result.theta, float), float(result.sigma))
    except KenwardRogerError:
        raise ModelError(_("Kenward–Roger degrees of freedom need a dense computation over the {n} random "
                           "effects of this model, too large here; use Satterthwaite's (--df satterthwaite).").format(
            n=Z.shape[1])) from None
    return t_tests(np.asarray(result.beta, float), kr.se, kr.df, design.names), kr.vcov_adjusted


def _variance_rows(result, design: Design) -> list[dict]:
    """lme4's ``as.data.frame(VarCorr())``: per block the variances, then the covariances (lower
    triangle by columns), group names made unique as lme4 does (``patient``, ``patient.1``)."""
    rows, seen = [], {}
    if hasattr(result, "sums"):  # profiled: σ² ΛΛ' per block, from θ
        from core.stats.profiled import block_covariances

        covs = block_covariances(result)
    else:
        covs = [np.atleast_2d(group.cov) for group in result.VarCorr().groups.values()]
    for block, cov in zip(design.blocks, covs):
        k = seen.get(block.group, 0)
        seen[block.group] = k + 1
        name = block.group if k == 0 else f"{block.group}.{k}"
        for i, term in enumerate(block.names):
            rows.append({"group": name, "term1": term, "term2": None, "vcov": float(cov[i, i])})
        for j in range(len(block.names)):
            for i in range(j + 1, len(block.names)):
                rows.append({"group": name, "term1": block.names[j], "term2": block.names[i],
                             "vcov": float(cov[i, j])})
    rows.append({"group": "Residual", "term1": None, "term2": None, "vcov": float(result.sigma ** 2)})
    return rows


def _deviance_function(result):
    if hasattr(result, "sums"):  # profiled
        from core.stats.profiled import deviance_function

        return deviance_function(result.sums, result.REML)
    from mixedlm.estimation.reml import LMMOptimizer

    optimizer = LMMOptimizer(result.matrices, REML=result.REML)
    return optimizer.objective


#: lme4's notes that say nothing against the optimum (``checkHess`` codes 2 and 3): kept in
#: ``warnings``, but a fit with only these is converged.
NOTE_ONLY = ("very large eigenvalue", "large eigenvalue ratio")
#: The smallest Hessian eigenvalue (in absolute value) below which the central-difference Hessian is
#: recomputed by Richardson extrapolation before lme4's rules judge it. With lme4's step 1e-4 a
#: second difference of a deviance f carries a rounding error of about 4·ε·|f|/1e-8 (≈ 1e-6 for
#: f ≈ 10): an eigenvalue of a flat direction comes out anywhere in ±1e-5 depending on the CPU's and
#: BLAS's rounding, on both sides of lme4's tolerance 1e-6. Richardson's estimate is accurate to
#: about 1e-9 there, so the verdict no longer depends on the machine. Ordinary fits have
#: eigenvalues of 0.1 or more and are never recomputed.
REFINE_BELOW = 1e-2


def _central_derivatives(fun, theta: np.ndarray, d: float = 1e-4) -> tuple[float, np.ndarray, np.ndarray]:
    """f, gradient and Hessian by central differences with step ``d`` (``lme4:::deriv12``)."""
    fx = float(fun(theta))
    n = len(theta)
    H = np.empty((n, n))
    g = np.empty(n)
    for j in range(n):
        e_j = np.zeros(n)
        e_j[j] = d
        fadd, fsub = float(fun(theta + e_j)), float(fun(theta - e_j))
        H[j, j] = (fadd - 2 * fx + fsub) / d ** 2
        g[j] = (fadd - fsub) / (2 * d)
        for i in range(j):
            e_i = np.zeros(n)
            e_i[i] = d
            H[i, j] = H[j, i] = (float(fun(theta + e_i + e_j)) - float(fun(theta + e_i - e_j))
                                 - float(fun(theta - e_i + e_j)) + float(fun(theta - e_i - e_j))) / (4 * d * d)
    return fx, g, H


def _hessian_verdict(H: np.ndarray) -> list[str]:
    """lme4's ``checkHess`` messages for a finite Hessian (``HESSIAN_TOLERANCE``)."""
    ev = np.linalg.eigvalsh((H + H.T) / 2)
    negative = int(np.sum(ev < -HESSIAN_TOLERANCE))
    if negative:
        return [f"Model failed to converge: degenerate  Hessian with {negative} negative eigenvalues"]
    zero = int(np.sum(np.abs(ev) < HESSIAN_TOLERANCE))
    try:
        np.linalg.cholesky(H)
        pd_ok = True
    except np.linalg.LinAlgError:
        pd_ok = False
    if zero or not pd_ok:
        return [" Hessian is numerically singular: parameters are not uniquely determined"]
    out = []
    if ev.max() * HESSIAN_TOLERANCE > 1:
        out.append("Model is nearly unidentifiable: very large eigenvalue\n - Rescale variables?")
    if ev.min() / ev.max() < HESSIAN_TOLERANCE:
        out.append("Model is nearly unidentifiable: large eigenvalue ratio\n - Rescale variables?")
    return out


def convergence_check(result) -> tuple[list[str], bool]:
    """lme4's ``checkConv`` on a fit, judged so that the verdict holds on any machine and size.

    Returns ``(messages, failed)``. For a non-singular fit: the gradient g and Hessian H of the
    deviance in θ by central differences (δ = 1e-4, ``lme4:::deriv12``), then lme4's rules:

    - **gradient** (``check.conv.grad``): max(min(|solve(chol(H), g)|, |g|)) > 2e-3 gives lme4's
      "Model failed to converge with max|grad| = …". lme4's help (``?convergence``) notes that this
      scaled gradient grows with the sample size, so that it warns on well-behaved fits of large data;
      the check its maintainers use there is the relative gradient ``solve(H, g)`` (the Newton step
      to the optimum, in θ's units). When that step is below 2e-3 in every component the fit has
      reached its optimum: lme4's message is kept, and the fit is not failed.
    - **Hessian** (``check.conv.hess``, ``lme4:::checkHess``, tolerance 1e-6): a negative eigenvalue
      ("degenerate Hessian") or a zero one ("numerically singular") fails the fit; "very large
      eigenvalue" (> 1e6, which any fit of about 10⁵ rows or more has, since the deviance's
      curvature grows with the number of groups) and "large eigenvalue ratio" are lme4's notes
      (codes 2 and 3), kept in the messages without failing the fit. Before judging, a Hessian with
      an eigenvalue within :data:`REFINE_BELOW` of zero is recomputed at the optimum (a trust-region
      Newton polish from the fit's θ, to a gradient of about 1e-10) by Richardson extrapolation
      (numDeriv's ``hessian``), so that neither rounding nor where an optimiser stopped near a flat
      ridge decides the verdict (see :data:`REFINE_BELOW`).
    """
    theta = np.asarray(result.theta, float)
    if len(theta) == 0 or _is_singular(result):
        return [], False
    fun = _deviance_function(result)
    try:
        fx, g, H = _central_derivatives(fun, theta)
    except Exception:  # noqa: BLE001 - the engine refuses a point: lme4 says the same
        return ["Problem with Hessian check (infinite or missing values?)"], True
    if not np.all(np.isfinite(g)):
        return ["Gradient contains NAs"], True
    if not np.all(np.isfinite(H)):
        return ["Problem with Hessian check (infinite or missing values?)"], True
    ev = np.linalg.eigvalsh((H + H.T) / 2)
    if float(np.min(np.abs(ev))) < REFINE_BELOW or ev[0] < 0:
        from core.stats.profiled import _hessian, minimize_trust

        try:
            # the optimum first (a Newton polish from the fit's θ: an optimiser's stop a little off
            # a flat ridge leaves an eigenvalue of ±1e-4 there), then its Hessian by Richardson
            x, fx2, ok = minimize_trust(lambda z: float(fun(z)), theta)[:3]
            at = x if ok and np.isfinite(fx2) and fx2 <= fx + 1e-8 * max(1.0, abs(fx)) else theta
            refined = _hessian(lambda z: float(fun(z)), at)
            if np.all(np.isfinite(refined)):
                H = (refined + refined.T) / 2
        except Exception:  # noqa: BLE001 - keep the central-difference Hessian
            pass
    messages: list[str] = []
    failed = False
    try:
        L = np.linalg.cholesky(H)
        scaled = np.linalg.solve(L.T, g)  # R's chol() is the upper factor: solve(R, g)
        mingrad = np.minimum(np.abs(scaled), np.abs(g))
        maxmin = float(np.max(mingrad))
        if maxmin > GRADIENT_TOLERANCE:
            comp = int(np.argmax(mingrad)) + 1
            messages.append(f"Model failed to converge with max|grad| = {maxmin:.6g} "
                            f"(tol = {GRADIENT_TOLERANCE:g}, component {comp})")
            relative = np.linalg.solve(H, g)
            if not float(np.max(np.abs(relative))) < GRADIENT_TOLERANCE:
                failed = True
    except np.linalg.LinAlgError:
        messages.append("unable to evaluate scaled gradient")
        failed = True
    hess = _hessian_verdict(H)
    messages += hess
    failed = failed or any(not any(k in m for k in NOTE_ONLY) for m in hess)
    return messages, failed


def convergence_messages(result) -> list[str]:
    """lme4's convergence messages on a fit (:func:`convergence_check`; empty when it passes)."""
    return convergence_check(result)[0]


def _is_singular(result, tol: float = SINGULAR_TOLERANCE) -> bool:
    """lme4's ``isSingular``: a θ with lower bound 0 (a relative SD) below ``tol`` (lme4's 1e-4)."""
    theta = np.asarray(result.theta, float)
    try:
        lower = np.asarray(result._theta_lower_bounds(), float)
    except Exception:  # noqa: BLE001
        return bool(result.isSingular(tol))
    return bool(np.any(np.abs(theta[lower == 0]) < tol))


#: performance's (insight's) tolerance for "some variance components equal zero" (``check_singularity``).
R2_SINGULAR_TOLERANCE = 1e-5


def nakagawa_r2(design: Design, beta: np.ndarray, variance: list[dict],
                no_random_variance: bool) -> tuple[float | None, float | None]:
    """Nakagawa's marginal and conditional R² as ``performance::r2_nakagawa`` (performance 0.10.2,
    insight 0.19) computes them for a linear mixed model: σ²_f = var(Xβ) (n − 1 denominator); σ²_r =
    Σ over the random-effect blocks of the first term of each grouping factor of mean_i z_iᵀ Σ z_i,
    with z_i the fixed-effect columns named like the block's terms; σ²_ε = residual variance.
    R²m = σ²_f / (σ²_f + σ²_r + σ²_ε), R²c = (σ²_f + σ²_r) / (…). ``no_random_variance`` (a relative
    SD θ below :data:`R2_SINGULAR_TOLERANCE`, insight's ``.is_singular``): insight gives no random
    variance, and performance returns R²m = σ²_f / (σ²_f + σ²_ε) and no R²c."""
    eta = design.X @ beta
    var_f = float(np.var(eta, ddof=1)) if len(eta) > 1 and np.ptp(eta) > 0 else 0.0
    del eta
    X = design.X
    names = list(design.names)
    # mean_i z_i' S z_i = Σ_jk S_jk (Z'Z)_jk / n: from the cross-products of X (no copy of its columns)
    gram = X.T @ X
    if "(Intercept)" not in names:
        sums = X.sum(axis=0)
        gram = np.block([[np.array([[float(len(design.y))]]), sums[None, :]], [sums[:, None], gram]])
        names = ["(Intercept)"] + names
    if no_random_variance:
        var_e = next(r["vcov"] for r in variance if r["group"] == "Residual")
        total = var_f + var_e
        return (var_f / total, None) if math.isfinite(total) and total > 0 else (None, None)
    var_r = 0.0
    seen = set()
    rows = [r for r in variance if r["group"] != "Residual"]
    for block in design.blocks:
        if block.group in seen:  # insight keeps the VarCorr blocks named like a grouping factor
            continue
        seen.add(block.group)
        sigma = np.zeros((len(block.names), len(block.names)))
        for r in rows:
            if r["group"] != block.group:
                continue
            i = block.names.index(r["term1"])
            j = block.names.index(r["term2"]) if r["term2"] else i
            sigma[i, j] = sigma[j, i] = r["vcov"]
        valid = [k for k, n in enumerate(block.names) if n in names]
        if not valid:
            continue
        cols = [names.index(block.names[k]) for k in valid]
        S = sigma[np.ix_(valid, valid)]
        var_r += float(np.sum(S * gram[np.ix_(cols, cols)])) / len(design.y)
    var_e = next(r["vcov"] for r in variance if r["group"] == "Residual")
    total = var_f + var_r + var_e
    if not (math.isfinite(total) and total > 0):
        return None, None
    return var_f / total, (var_f + var_r) / total


def _plain(message: str) -> str:
    return " ".join(message.replace("\n", " ").split())


#: Which engine fits: ``auto`` (the profiled one where it covers the design and ends at a clean
#: optimum, else mixedlm), ``mixedlm`` or ``profiled``; the environment variable
#: ``ALLIANCE_MODEL_ENGINE`` sets the default (the benchmarks compare the two with it).
ENGINES = ("auto", "profiled", "mixedlm")


def _profiled_fits(design: Design, ml: bool, engine_formula: str):
    """REML and ML fits by :mod:`core.stats.profiled`, or (None, None) when it does not cover the
    design or a fit does not end at a clean optimum."""
    from core.stats.profiled import fit_profiled, grouped_sums

    blocks = [(b.codes, b.columns) for b in design.blocks]
    sums = grouped_sums(design.y, design.X, blocks)
    if sums is None:
        return None, None
    rows = (design.y, design.X, blocks)
    reml = fit_profiled(sums, True, design_rows=rows, engine_formula=engine_formula)
    if not reml.clean:
        return None, None
    ml_fit = fit_profiled(sums, False, start=reml.theta, design_rows=rows, engine_formula=engine_formula) \
        if ml else None
    if ml_fit is not None and not ml_fit.clean:
        return None, None
    return reml, ml_fit


def fit_formula(data: pd.DataFrame, formula: str | Formula, *, ml: bool = True,
                aliases: dict[str, str] | None = None, role_headers: dict[str, str] | None = None,
                cell_reasons: pd.DataFrame | None = None, frame: ModelFrame | None = None,
                engine: str | None = None, df_method: str = "satterthwaite") -> FormulaFit:
    """Fit an lme4 formula to a validated table (see the module docstring for every rule).

    Returns a :class:`FormulaFit` with the contract's values and the engine's REML (and, with
    ``ml``, ML) fits. Raises :class:`ModelError` with one plain sentence when the model cannot be
    fitted (a name that does not exist, no usable row, unidentifiable random effects).

    ``engine`` (default ``ALLIANCE_MODEL_ENGINE`` or ``auto``): models with one grouping factor, or
    two nested ones, are fitted by :mod:`core.stats.profiled` from per-group sums (the same
    criterion, lme4's numbers; Satterthwaite df as lmerTest computes them); every other model, and
    any such fit that does not end at a clean optimum, by mixedlm.
    """
    import os

    engine = engine or os.environ.get("ALLIANCE_MODEL_ENGINE") or "auto"
    if df_method not in DF_METHODS:
        raise ValueError(f"df_method must be one of {DF_METHODS}, not {df_method!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    if frame is None:
        frame = build_model_frame(data, formula, aliases=aliases, role_headers=role_headers,
                                  cell_reasons=cell_reasons)
    design = build_design(frame)
    check_design(design)
    notes: list[str] = list(frame.notes)
    if design.dropped:
        k = len(design.dropped)
        notes.append(f"fixed-effect model matrix is rank deficient so dropping {k} "
                     f"{'column / coefficient' if k == 1 else 'columns / coefficients'} "
                     f"({', '.join(design.dropped)}: a linear combination of the columns before)")
    sds = [np.std(design.X[:, i], ddof=1) for i, n in enumerate(design.names) if n != "(Intercept)"]
    sds = [s for s in sds if s > 0]
    if len(sds) > 1 and max(sds) / min(sds) > 1000:
        notes.append("Some predictor variables are on very different scales: consider rescaling")
    engine_formula = engine_formula_of(design)
    reml = ml_fit = None
    reml_msgs: list[str] = []
    ml_msgs: list[str] = []
    if engine != "mixedlm":
        reml, ml_fit = _profiled_fits(design, ml, engine_formula)
        if reml is None and engine == "profiled":
            raise ModelError(_("This model is not one the profiled engine fits (one grouping factor, or two "
                               "nested ones), or its fit did not converge there."))
    used_engine = "profiled" if reml is not None else "mixedlm"
    if reml is None:
        engine_data, engine_formula = engine_inputs(design)
        reml, reml_msgs = _engine_fit(engine_data, engine_formula, reml=True)
        ml_fit, ml_msgs = _engine_fit(engine_data, engine_formula, reml=False) if ml else (None, [])
        del engine_data
    y_sd = float(np.std(design.y))
    if not float(reml.sigma) > EXACT_FIT_RATIO * y_sd:
        # lme4 ends such a fit with a residual SD near zero, convergence warnings and no standard
        # errors ("Computed variance-covariance matrix problem"); the deviance has no minimum
        terms = ", ".join(n for n in design.names if n != "(Intercept)") or _("the intercept")
        raise ModelError(_("The outcome {outcome} follows the model's terms ({terms}) and random effects exactly in every row, "
                           "with no residual variation: the residual variance would be zero and the likelihood "
                           "has no maximum, so the model cannot be fitted (lme4 ends such a fit with a residual "
                           "SD near zero and convergence warnings). Check the data: are these real "
                           "measurements?").format(outcome=frame.formula.outcome, terms=terms))
    for m in reml_msgs:
        if "singular" not in m.lower():
            notes.append(_plain(m))
    if df_method == "kr":
        fixed, cov = kenward_roger_table(reml, design)
    else:
        fixed, cov = _profiled_fixed_table(reml, design.names) if used_engine == "profiled" \
            else _fixed_table(reml, design.names)
    variance = _variance_rows(reml, design)
    singular = _is_singular(reml)
    conv, conv_failed = convergence_check(reml)
    converged = bool(reml.converged) and not conv_failed
    if singular:
        notes.append("boundary (singular) fit: a variance is estimated as zero or a correlation as ±1; "
                     "the random effects are more complex than the data support (see lme4's help('isSingular')).")
    for m in conv:
        notes.append(_plain(m))
    if not reml.converged:
        notes.append(_("The optimizer did not converge: {message}").format(message=reml.message))
    if conv_failed and any("Hessian" in m or "scaled gradient" in m for m in conv):
        notes.append(_("Degenerate fit: the likelihood is flat or curved the wrong way in some variance "
                       "parameter, so variances, standard errors, df and p-values are not trustworthy."))
    if ml_fit is not None:
        if not ml_fit.converged:
            notes.append(_("ML refit: the optimizer did not converge: {message}").format(message=ml_fit.message))
        for m in ml_msgs:
            if "singular" not in m.lower():
                notes.append("ML refit: " + _plain(m))
    r2m, r2c = nakagawa_r2(design, np.asarray(reml.beta, float), variance, _is_singular(reml, R2_SINGULAR_TOLERANCE))
    ll_ml = float(ml_fit.logLik().value) if ml_fit is not None else None
    k = int(ml_fit.logLik().df) if ml_fit is not None else None
    n = len(design.y)
    return FormulaFit(
        formula=frame.formula.text, frame=frame, design=design, fixed=fixed, variance=variance,
        loglik_reml=float(reml.logLik().value), loglik_ml=ll_ml, n_params_ml=k,
        aic=-2 * ll_ml + 2 * k if ml_fit is not None else None,
        bic=-2 * ll_ml + k * math.log(n) if ml_fit is not None else None,
        r2_marginal=r2m, r2_conditional=r2c, converged=converged, singular=singular,
        warnings=tuple(dict.fromkeys(notes)), reml=reml, ml=ml_fit, engine_formula=engine_formula,
        fixed_cov=cov, engine=used_engine, df_method=df_method)
