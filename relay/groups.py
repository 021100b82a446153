"""Compare groups: one prompt sent to several models at once (``POST /api/groups``).

Every model's request is validated before anything is stored: if one breaks a rule, the answer is 422
with every problem of every model (each tagged with its ``model``) and no job exists.
"""

from __future__ import annotations

from typing import Any

from .errors import BadRequest, ValidationError
from .service import Relay
from .storage.records import new_job_id

MAX_MODELS = 12


def new_group_id() -> str:
    """A sortable group id, told apart from job ids by its ``g-`` prefix."""
    return f"g-{new_job_id()}"


def _models(body: dict[str, Any]) -> list[str]:
    if "model" in body:
        raise ValidationError("a group takes models (a list), not model", "model")
    models = body.get("models")
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise ValidationError('models must be a list of model names, e.g. ["veo-3.1", "sora-2"]', "models")
    if len(set(models)) != len(models):
        raise ValidationError("models lists a model twice; name each once", "models")
    if len(models) > MAX_MODELS:
        raise ValidationError(f"a group takes at most {MAX_MODELS} models", "models")
    return models


async def submit_group(relay: Relay, body: Any) -> dict[str, Any]:
    """Validate the request for every model, then store one job per model under a new group id."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object: the videos/create fields with models: [...]")
    models = _models(body)
    common = {k: v for k, v in body.items() if k != "models"}
    problems: list[dict[str, Any]] = []
    for model in models:
        try:
            relay.check({**common, "model": model})
        except ValidationError as exc:
            listed = exc.problems or [{"field": exc.field, "error": exc.message}]
            problems += [{**p, "model": model, "error": f"{model}: {p['error']}"} for p in listed]
    if problems:
        first = problems[0]
        raise ValidationError(first["error"], first["field"], problems if len(problems) > 1 else None)
    group_id = new_group_id()
    jobs = [await relay.submit({**common, "model": model}, group_id=group_id) for model in models]
    return {"group_id": group_id, "jobs": jobs}
