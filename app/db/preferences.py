"""Recipients' choices: the periodicity of their like digests, and opt-outs by preference."""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.db.models import OptOut, Preference, PreferenceChange
from app.domain.preferences import CHOICES, PERIODIC_CHOICES, check_choice, current_choice
from app.domain.vocabulary import PERIODICITIES, ChoosableKind, Periodicity, one_of

SOURCE = "preferences"
preferences = cast(Table, Preference.__table__)
opt_outs = cast(Table, OptOut.__table__)
changes = cast(Table, PreferenceChange.__table__)


def current(*, session: Session, user_id: uuid.UUID) -> dict[str, str]:
    """The choice shown for each kind (see app.domain.preferences.current_choice)."""
    off = set(session.scalars(select(OptOut.kind).where(OptOut.user_id == user_id)))
    chosen = dict(
        session.execute(
            select(Preference.kind, Preference.periodicity).where(Preference.user_id == user_id)
        ).all()
    )
    return {
        kind: current_choice(
            kind, opted_out=kind in off, periodicity=_periodicity(chosen.get(kind))
        )
        for kind in CHOICES
    }


def _periodicity(stored: str | None) -> Periodicity | None:
    return one_of(stored, PERIODICITIES, "periodicity") if stored is not None else None


def choose_all(
    *, session: Session, user_id: uuid.UUID, chosen: dict[ChoosableKind, str]
) -> list[ChoosableKind]:
    """Record each choice of a form; return the kinds whose choice changed."""
    return [
        kind
        for kind, choice in chosen.items()
        if choose(session=session, user_id=user_id, kind=kind, choice=choice)
    ]


def choose(*, session: Session, user_id: uuid.UUID, kind: ChoosableKind, choice: str) -> bool:
    """Record one choice; return whether it changed anything (a change is kept in history)."""
    check_choice(kind, choice)
    before = current(session=session, user_id=user_id)[kind]
    if choice == "off":
        session.execute(
            pg_insert(opt_outs)
            .values(user_id=user_id, kind=kind, source=SOURCE)
            .on_conflict_do_nothing()
        )
    else:
        session.execute(
            delete(opt_outs).where(opt_outs.c.user_id == user_id, opt_outs.c.kind == kind)
        )
    if choice in PERIODIC_CHOICES:
        values: dict[str, Any] = {"user_id": user_id, "kind": kind, "periodicity": choice}
        new = pg_insert(preferences).values(**values)
        session.execute(
            new.on_conflict_do_update(
                index_elements=["user_id", "kind"],
                set_={
                    "periodicity": new.excluded.periodicity,
                    "updated_at": new.excluded.updated_at,
                },
            )
        )
    if before == choice:
        return False
    session.execute(insert(changes).values(user_id=user_id, kind=kind, choice=choice))
    return True
