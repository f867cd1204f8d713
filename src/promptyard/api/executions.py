"""Executions: run a model (JSON or a server-sent event stream), history, export, analytics, feedback, cache."""

from __future__ import annotations

import json
from typing import Any, Literal, Union

from flask import Response, stream_with_context
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from promptyard.api.auth import require_role
from promptyard.api.bodies import Body, DbCount, DbId, UtcDateTime
from promptyard.api.sse import event_stream_response
from promptyard.execution import analytics as analytics_service
from promptyard.execution import feedback as feedback_service
from promptyard.execution import history
from promptyard.execution.pipeline import (
    ExecutionRequest,
    ExecutionStream,
    execute,
    execute_stream,
    execution_to_dict,
    get_cache,
)

api = APIBlueprint(
    "executions", __name__, url_prefix="/api/v1", abp_tags=[Tag(name="executions")], abp_security=[{"bearer": []}]
)


class ChatMessage(Body):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class ExecutionCreate(Body):
    model: str = Field(description="A registered model's name.")
    prompt: str | None = Field(None, description="A library prompt to run (else give `input`).")
    version: DbId | None = Field(None, description="Prompt version number (default: latest).")
    label: str | None = Field(None, description="Prompt label, e.g. production.")
    experiment: str | None = Field(None, description="An A/B experiment; with `subject`, its sticky arm.")
    subject: str | None = Field(None, max_length=255, description="Who the experiment assigns an arm to.")
    variables: dict[str, Any] = Field(default_factory=dict, description="Template variables.")
    input: Union[str, list[ChatMessage], None] = Field(None, description="Raw text or chat messages.")
    params: dict[str, Any] = Field(default_factory=dict, description="Generation params over the defaults.")
    cache: Union[bool, Literal["always"]] = Field(
        True, description='true: cache deterministic requests; "always": sampled ones too; false: skip the cache.'
    )
    stream: bool = Field(False, description="Answer with text/event-stream deltas.")


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str | None = None
    version: DbId | None = None
    model: str | None = None
    status: Literal["running", "succeeded", "failed", "cancelled"] | None = None
    since: UtcDateTime | None = None
    until: UtcDateTime | None = None
    cache_hit: bool | None = None

    def filters(self) -> history.HistoryFilters:
        return history.HistoryFilters(prompt=self.prompt, version=self.version, model=self.model,
                                      status=self.status, since=self.since, until=self.until,
                                      cache_hit=self.cache_hit)


class ListQuery(HistoryQuery):
    limit: int = Field(50, ge=1, le=history.MAX_LIMIT)
    offset: DbCount = 0


class ExportQuery(HistoryQuery):
    format: Literal["csv", "jsonl"] = "jsonl"


class AnalyticsQuery(HistoryQuery):
    group_by: Literal["model", "prompt", "version", "day"] = "model"


class ExecutionPath(BaseModel):
    execution_id: int


class FeedbackCreate(Body):
    rating: int = Field(ge=1, le=5, description="1 (bad) to 5 (good).")
    comment: str = Field("", max_length=feedback_service.MAX_COMMENT)


@api.post("/executions", responses={201: None})
def create_execution(body: ExecutionCreate):
    """Run a prompt or raw input on a model and record it; `stream: true` answers with server-sent events."""
    request = ExecutionRequest(
        model=body.model, prompt=body.prompt, version=body.version, label=body.label,
        experiment=body.experiment, subject=body.subject, variables=body.variables,
        input=[m.model_dump() for m in body.input] if isinstance(body.input, list) else body.input,
        params=body.params, cache=body.cache, source="api",
    )
    if not body.stream:
        return execution_to_dict(execute(request)), 201
    return _execution_events(execute_stream(request))


def _execution_events(stream: ExecutionStream) -> Response:
    """Server-sent events, one `data:` line per event of the execution stream."""

    def events():
        try:
            for event in stream:
                yield f"data: {json.dumps(event)}\n\n"
        finally:
            stream.close()

    return event_stream_response(events(), stream, {"X-Execution-Id": str(stream.execution_id)})


@api.get("/executions")
def list_executions(query: ListQuery):
    """Executions matching the filters, newest first."""
    rows, total = history.list_executions(query.filters(), query.limit, query.offset)
    return {"items": [execution_to_dict(row) for row in rows], "total": total}


@api.get("/executions/export")
def export_executions(query: ExportQuery):
    """Every matching execution as CSV or JSON Lines."""
    chunks = history.export_executions(query.filters(), query.format)
    mimetype = "text/csv" if query.format == "csv" else "application/x-ndjson"
    response = Response(stream_with_context(chunks), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="executions.{query.format}"'
    return response


@api.get("/executions/<int:execution_id>")
def get_execution(path: ExecutionPath):
    """One execution, with its feedback."""
    row = history.get_execution(path.execution_id)
    return {**execution_to_dict(row), "feedback": [feedback_service.feedback_to_dict(f) for f in row.feedback]}


@api.post("/executions/<int:execution_id>/feedback", responses={201: None})
def add_feedback(path: ExecutionPath, body: FeedbackCreate):
    """Rate an execution from 1 to 5, with an optional comment."""
    row = feedback_service.add_feedback(path.execution_id, body.rating, body.comment)
    return feedback_service.feedback_to_dict(row), 201


@api.get("/analytics")
def get_analytics(query: AnalyticsQuery):
    """Count, success rate, latency percentiles, tokens, cost, cache hit rate and mean rating per group."""
    items = analytics_service.analytics(query.group_by, query.filters())
    return {"group_by": query.group_by, "items": items, "total": len(items)}


@api.get("/cache/stats")
def cache_stats():
    """Response cache entries, hits, misses and hit rate."""
    return get_cache().stats()


@api.delete("/cache")
@require_role("admin")
def clear_cache():
    """Empty the response cache."""
    return {"deleted": get_cache().clear()}
