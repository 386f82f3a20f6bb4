"""The rule engine: a pure function from (session, world) to an Evaluation.

- :mod:`~sandbox.engine.plan`: a rule set compiled once into flat lists;
- :mod:`~sandbox.engine.run`: one evaluation walking the plan (codes, rules, groups);
- :mod:`~sandbox.engine.codes`: the code checks in Talon.One's order of reasons;
- :mod:`~sandbox.engine.desire`: what fired rules' effects want;
- :mod:`~sandbox.engine.apply`: group arbitration, caps, budgets, accept and reject;
- :mod:`~sandbox.engine.context`: what a condition sees;
- :mod:`~sandbox.engine.results`: the Evaluation, its why built when read.
"""

from sandbox.engine.context import Context, Event
from sandbox.engine.plan import Plan, compile_plan
from sandbox.engine.results import CreatedCode, Evaluation
from sandbox.engine.run import Settings, World, evaluate

__all__ = [
    "Context",
    "CreatedCode",
    "Evaluation",
    "Event",
    "Plan",
    "Settings",
    "World",
    "compile_plan",
    "evaluate",
]
