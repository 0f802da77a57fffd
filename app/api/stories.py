"""Stories over HTTP: ``GET /v1/stories`` lists the stories (near-duplicate articles grouped, app.stories)
with their articles, newest first."""

from __future__ import annotations

from datetime import date
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import DeskDep, ServiceDep, guard
from app.api.routes import ERRORS

router = APIRouter(prefix="/v1", dependencies=[Depends(guard)], responses=ERRORS, tags=["stories"])


class StoryArticleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    source: str
    published_at: str


class StoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The story's id; it stays when any of its articles is deleted or updated.")
    published_at: str = Field(description="When its newest article was published.")
    articles: list[StoryArticleOut] = Field(description="The wire copies, rewrites and versions, oldest first.")


@router.get("/stories")
async def list_stories(
    desk: DeskDep,
    service: ServiceDep,
    since: Annotated[
        date | None, Query(description="Only stories with an article published that day or later.")
    ] = None,
) -> list[StoryOut]:
    """Stories, newest first: each report once, with every stored article that carries it."""
    stories = await service.run(partial(desk.story_list, since))
    return [StoryOut.model_validate(s) for s in stories]
