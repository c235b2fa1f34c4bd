"""Finding agents: search by name and tag, filter by owner and tag, sort, and pages.

The gallery and ``GET /api/agents`` page through what may be thousands of agents, so every
step runs in SQL and only one page of rows is ever read. The card's tags live inside its JSON,
which SQLite and PostgreSQL search differently (and SQLite's ``lower()`` folds ASCII only), so
the agent row keeps two plain search columns beside the card, written whenever the card is
(``search_columns``): ``name_key``, the casefolded name, and ``tags_text``, the casefolded tags
between bars (``|elf|mage|``), where a LIKE on ``|elf|`` finds exactly one tag.

What a caller is shown follows ``agents.visibility``: public agents and the caller's own.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import func, or_, select

from agents.records import AgentRecord
from agents.views import AgentView
from core.db import Database
from core.errors import ValidationError
from core.principal import Principal

Sort = Literal["oldest", "recent", "name"]
SORTS: tuple[str, ...] = get_args(Sort)
MAX_TEXT = 200  # the longest search text or tag taken
MAX_PAGE = 500
OWNER_ME = "me"
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def search_key(text: object) -> str:
    """How names and tags are compared and sorted: without accents, casefolded, runs of
    spaces made one ("Émile" is found by "emile" and sorts among the e's)."""
    plain = unicodedata.normalize("NFKD", str(text or ""))
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return " ".join(plain.split()).casefold()


def _printable(text: str) -> str:
    """Control characters cannot be part of a name or tag (and PostgreSQL refuses NUL)."""
    return "".join(c if c.isprintable() else " " for c in text)


def _tag_key(tag: object) -> str:
    return search_key(tag).replace("|", " ").strip()


def search_columns(name: str, tags: Iterable[object]) -> dict[str, str]:
    """The search columns of an agent with this name and these tags (see the module doc)."""
    keys = [k for k in dict.fromkeys(_tag_key(t) for t in tags) if k]
    return {
        "name_key": search_key(name)[:MAX_TEXT],
        "tags_text": f"|{'|'.join(keys)}|" if keys else "",
    }


@dataclass(frozen=True)
class AgentQuery:
    """One gallery request. ``owner``: a wallet address, ``"me"`` (the caller's own) or None
    (everyone's). ``sort``: ``oldest`` first (the default, as the API always listed),
    ``recent`` (last changed first) or ``name``."""

    q: str = ""
    tag: str = ""
    owner: str | None = None
    sort: str = "oldest"
    limit: int = 100
    offset: int = 0

    def checked(self) -> AgentQuery:
        """The query with its text trimmed, or ``ValidationError`` (422) naming what is wrong."""
        q, tag = " ".join(_printable(self.q).split()), _tag_key(_printable(self.tag))
        if len(q) > MAX_TEXT or len(tag) > MAX_TEXT:
            raise ValidationError(f"search text and tag may be at most {MAX_TEXT} characters")
        if self.sort not in SORTS:
            raise ValidationError(f"sort must be one of {', '.join(SORTS)}, not {self.sort!r}")
        owner = (self.owner or "").strip() or None
        if owner is not None and owner != OWNER_ME and not _ADDRESS.fullmatch(owner):
            raise ValidationError(
                f"owner must be a wallet address (0x and 40 hex digits) or 'me', not {owner!r}"
            )
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValidationError(f"limit must be between 1 and {MAX_PAGE}")
        if self.offset < 0:
            raise ValidationError("offset must be 0 or more")
        return AgentQuery(q, tag, owner, self.sort, self.limit, self.offset)


@dataclass(frozen=True)
class AgentPage:
    """One page of agents and how many match in all."""

    agents: list[AgentView]
    total: int
    offset: int
    limit: int

    @property
    def next_offset(self) -> int | None:
        end = self.offset + len(self.agents)
        return end if end < self.total else None


class AgentSearch:
    """Mixed into ``AgentService``: needs its ``db``, ``_view`` and ``_listed``."""

    db: Database

    def _view(self, row: AgentRecord) -> AgentView:  # provided by AgentService
        raise NotImplementedError

    @staticmethod
    def _listed(principal: Principal) -> Any:  # provided by AgentVisibility
        raise NotImplementedError

    def search_agents(self, query: AgentQuery, *, principal: Principal) -> AgentPage:
        """The page of agents ``principal`` may see that match ``query``; a bad query is a
        ``ValidationError`` (422) that says what to change."""
        query = query.checked()
        where = self._search_filter(query, principal)
        if where is None:  # "mine" for someone who is not signed in: nothing is theirs
            return AgentPage([], 0, query.offset, query.limit)
        rows_query = (
            select(AgentRecord)
            .where(*where)
            .order_by(*_ORDER[query.sort])
            .offset(query.offset)
            .limit(query.limit)
        )
        count_query = select(func.count()).select_from(AgentRecord).where(*where)
        with self.db.session() as s:
            total = int(s.scalar(count_query) or 0)
            rows = s.scalars(rows_query).all() if query.offset < total else []
            return AgentPage([self._view(r) for r in rows], total, query.offset, query.limit)

    def visible_names(self, *, principal: Principal) -> list[tuple[str, str]]:
        """``(id, name)`` of every agent ``principal`` sees listed, oldest first: what an
        agent picker needs, read from two columns instead of validating every card."""
        query = (
            select(AgentRecord.id, AgentRecord.name)
            .where(self._listed(principal))
            .order_by(AgentRecord.created_at, AgentRecord.id)
        )
        with self.db.session() as s:
            return [(agent_id, name) for agent_id, name in s.execute(query)]

    def visible_tags(self, *, principal: Principal, limit: int = 50) -> list[tuple[str, int]]:
        """The tags of the agents ``principal`` may see, most used first, with their counts
        (for a tag filter's choices). Reads one short column, not the cards."""
        query = select(AgentRecord.tags_text).where(
            self._listed(principal), AgentRecord.tags_text != ""
        )
        counts: Counter[str] = Counter()
        with self.db.session() as s:
            for text in s.scalars(query):
                counts.update(t for t in text.strip("|").split("|") if t)
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]

    def _search_filter(self, query: AgentQuery, principal: Principal) -> list[Any] | None:
        where: list[Any] = [self._listed(principal)]
        if query.owner == OWNER_ME:
            if not principal.address:
                return None
            where.append(func.lower(AgentRecord.owner_address) == principal.address.lower())
        elif query.owner:
            where.append(func.lower(AgentRecord.owner_address) == query.owner.lower())
        if query.tag:
            where.append(AgentRecord.tags_text.contains(f"|{query.tag}|", autoescape=True))
        if query.q:
            text = search_key(query.q)
            where.append(
                or_(
                    AgentRecord.name_key.contains(text, autoescape=True),
                    AgentRecord.tags_text.contains(text.replace("|", " "), autoescape=True),
                )
            )
        return where


_ORDER: dict[str, tuple[Any, ...]] = {
    "oldest": (AgentRecord.created_at, AgentRecord.id),
    "recent": (AgentRecord.updated_at.desc(), AgentRecord.id.desc()),
    "name": (AgentRecord.name_key, AgentRecord.id),
}
