"""Stream lineage (analyst, marketer, ops): topics -> Faust agents and ksqlDB queries -> topics
-> sinks, with live rates and consumer lag per edge (``instore.lineage``), and the page that
draws it (``/lineage/view``)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import RoleGuard, ServicesDep
from api.funnel import hash_of
from instore import serving
from instore.lineage.reading import Lineage

router = APIRouter(prefix="/lineage", tags=["lineage"])
Reader = Annotated[str, Depends(RoleGuard("analyst", "marketer", "ops"))]
PAGE = Path(__file__).resolve().parents[1] / "static" / "lineage.html"
_create_lock = threading.Lock()


class LineageNode(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(description="source:<name>, topic:<topic>, agent:<agent>, query:<QUERY_ID> "
                                "or sink:<name>")
    kind: Literal["source", "topic", "agent", "query", "sink"]
    label: str


class LineageEdge(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    from_: str = Field(alias="from", description="the writer (or the topic read)")
    to: str
    topic: str | None = Field(description="the topic the records flow through (none: Redis)")
    group: str | None = Field(description="the consumer group of the reader at `to`")
    rate_per_s: float | None = Field(
        description="records/s: appended to the topic (edge into a topic, or a reader without "
                    "a group), committed by the group (consumer edge); null until two samples")
    lag: int | None = Field(description="records the group has yet to read (consumer edges)")


class SourceStatus(BaseModel):
    ok: bool
    detail: str


class LineageGraph(BaseModel):
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    warnings: list[str]
    sampled_at: int = Field(description="epoch ms of this answer")
    interval_s: float | None = Field(description="seconds between the two samples the rates "
                                                 "come from")
    sources: dict[str, SourceStatus] = Field(
        description="what could be read: broker, ksqldb, serving (a failed one leaves its "
                    "figures null; the graph is still whole)")
    settings: dict[str, Any]


def lineage_of(request: Request, services: ServicesDep) -> Lineage:
    """One ``Lineage`` per app: it keeps the previous sample (rates) and a short cache."""
    state = request.app.state
    with _create_lock:
        if getattr(state, "lineage", None) is None:
            state.lineage = Lineage(services.settings,
                                    counters=lambda: hash_of(services.redis, serving.totals()))
    return state.lineage  # type: ignore[no-any-return]


@router.get("", response_model=LineageGraph)
def lineage(_role: Reader, view: Annotated[Lineage, Depends(lineage_of)]) -> dict[str, Any]:
    """The data flow as the settings, the running ksqlDB queries and the broker show it, with
    records/s and consumer lag per edge (read at most every few seconds)."""
    return view.snapshot()


@router.get("/view", include_in_schema=False)
def lineage_page() -> FileResponse:
    """The page that draws the lineage (its data call needs an analyst, marketer or ops key)."""
    return FileResponse(PAGE, headers={"Cache-Control": "no-cache"})
