"""The component's entry points (the exports of the WIT world ``job``).

A plugin's app module re-exports these five classes; componentize-py finds
them by name::

    from flinkw.exports import Plan, Transform, Keyed, Snapshot, Window  # noqa: F401
"""

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.imports import types as _wt

import flinkw as _f

_REGISTRY = []


def _registry():
    if not _REGISTRY:
        raise Err("the host called the plugin before `plan`")
    return _REGISTRY[0]


def _call(fn, *args):
    """Runs job code; any exception becomes the error shown to the user."""
    try:
        return fn(*args)
    except Err:
        raise
    except Exception as e:  # noqa: BLE001 — every job error goes to the user
        raise Err(_f.describe(e)) from None


def _lookup(table, index, what):
    g = _registry()
    items = getattr(g, table)
    if not 0 <= index < len(items):
        raise Err(f"no {what} {index} in this plugin")
    return items[index]


def _not_used(what):
    raise Err(f"this plugin has no {what}")


class Plan(_exports.Plan):
    """``plan``: runs the job function and returns its graph."""

    def plan(self, config):
        if not _f._JOB:
            raise Err("no job registered: decorate the job function with @flinkw.job")
        graph = _f._Graph()
        cfg = _f.Config(config)
        _call(_f._JOB[0], _f.Env(cfg, graph))
        _REGISTRY[:] = [graph]
        return _wt.JobGraph(graph.name, graph.nodes, graph.edges, graph.parallelism, sorted(cfg.read))


class Transform(_exports.Transform):
    """``transform.run``: a fused chain over one batch."""

    def run(self, chain, input):
        return _call(_lookup("chains", chain, "transform chain"), input)


class Keyed(_exports.Keyed):
    """``keyed.process`` and ``keyed.on-timer``."""

    def process(self, function, input):
        return _call(_lookup("keyed", function, "keyed function")[0], input)

    def on_timer(self, function, timers):
        return _call(_lookup("keyed", function, "keyed function")[1], timers)


class Snapshot(_exports.Snapshot):
    """Guest-held state for checkpoints."""

    def snapshot(self):
        g = _REGISTRY[0] if _REGISTRY else None
        if g is None or g.snapshot is None:
            return b""
        return bytes(g.snapshot())

    def restore(self, state):
        g = _registry()
        if g.restore is None:
            if state:
                raise Err("this plugin keeps no guest state but a snapshot holds some")
            return
        _call(g.restore, state)


class Window(_exports.Window):
    """Window functions: accumulate / merge / emit, or process."""

    def _fns(self, function, part):
        fns = _lookup("windows", function, "window function")
        fn = fns[part]
        if fn is None:
            _not_used("aggregate window function" if part < 3 else "full window function")
        return fn

    def accumulate(self, function, accumulators, input, targets):
        return _call(self._fns(function, 0), accumulators, input, targets)

    def merge(self, function, accumulators):
        return _call(self._fns(function, 1), accumulators)

    def emit(self, function, fired):
        return _call(self._fns(function, 2), fired)

    def process(self, function, fired):
        return _call(self._fns(function, 3), fired)
