"""Evaluation metrics: the shared DE engine, cell-cloud distances and metric protocols (DESIGN §9)."""

from scpert.metrics.evaluate import (
    ConditionContext,
    available_protocols,
    evaluate_predictions,
    get_protocol,
    register_protocol,
)

__all__ = [
    "ConditionContext",
    "available_protocols",
    "evaluate_predictions",
    "get_protocol",
    "register_protocol",
]
