"""A fused EXPLODE: when every table function of a stream query explodes one and the same
array (``EXPLODE(arr)``, ``EXPLODE(TRANSFORM(arr, x => ...))``), the array is evaluated once
per row and each output row is built from its element directly; columns that depend only on
the element are computed (and encoded) once per element."""

from __future__ import annotations

from stream_apps.ksqldb.expressions import Compiler
from stream_apps.ksqldb.functions import SCALARS
from stream_apps.ksqldb.nodes import Call, Col, Expr, Lambda, children
from stream_apps.ksqldb.plan import ExplodeColumn, ExplodePlan, OutputColumn
from stream_apps.ksqldb.scope import Scope
from stream_apps.ksqldb.spatial import SpatialFilter, rename_param


def plan_explode(columns: list[OutputColumn], comp: Compiler, scope: Scope) -> ExplodePlan | None:
    """The fused EXPLODE plan when every table function explodes the same array (see
    ExplodePlan), else None (the generic zip of the table functions' arrays)."""
    array: Expr | None = None
    bodies: dict[int, tuple[str, Expr]] = {}
    for i, c in enumerate(columns):
        if not c.table_function:
            continue
        assert isinstance(c.expr, Call)
        arr = arg = c.expr.args[0]
        match arg:
            case Call(name="TRANSFORM", args=(transformed, Lambda(params=(param,), body=body))):
                arr = transformed
                bodies[i] = (param, body)
        if array is None:
            array = arr
        elif arr != array:
            return None
    assert array is not None
    array_fn = comp.compile(array, scope)
    inner = getattr(array_fn, "inner", None)
    spatial = inner if isinstance(inner, SpatialFilter) else None
    width = scope.width
    out: list[ExplodeColumn] = []
    elem_type = comp.infer(array, scope)
    item = elem_type.params[0] if elem_type.name == "ARRAY" and elem_type.params else None
    for i, c in enumerate(columns):
        if not c.table_function:
            out.append(ExplodeColumn(i, c.name, "row", c.fn))
            continue
        if i not in bodies:
            out.append(ExplodeColumn(i, c.name, "self"))
            continue
        param, body = bodies[i]
        pscope = scope.with_params((param,), [item] if item is not None else [])
        fn = comp.compile(body, pscope)
        if spatial is not None and rename_param(body, param) == spatial.spec.distance_expr:
            # the FILTER computed it for every kept element (fn: when it could not)
            out.append(ExplodeColumn(i, c.name, "distance", fn))
            continue
        outer = _reads_outer(body, param)
        out.append(ExplodeColumn(i, c.name, "mixed" if outer else "elem", fn))
    return ExplodePlan(array_fn, out, spatial, width)


def _reads_outer(e: Expr, param: str) -> bool:
    """Whether a lambda body reads anything but its parameter (columns, aggregates, ...)."""
    match e:
        case Col():
            return e != Col(None, param)
        case Lambda():
            return True  # nested lambdas: not worth the analysis
        case Call(name=name) if name not in SCALARS:
            return True
    return any(_reads_outer(x, param) for x in children(e))
