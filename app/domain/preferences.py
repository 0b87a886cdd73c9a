"""What a recipient may choose on the preference page, and how each choice reads. Pure.

Like digests: daily, weekly or off. Mailings: on or off. Off is an opt-out (the same one the
unsubscribe link records); daily or weekly is the periodicity planning uses for that user's
like digests instead of the producer's.
"""

from __future__ import annotations

from typing import Final

from app.domain.vocabulary import CHOOSABLE_KINDS, ChoosableKind, Periodicity, one_of

CHOICES: Final[dict[ChoosableKind, tuple[str, ...]]] = {
    "likes": ("daily", "weekly", "off"),
    "mailing": ("on", "off"),
}
LABELS: Final[dict[ChoosableKind, str]] = {"likes": "Like digests", "mailing": "Mailings"}
PERIODIC_CHOICES: Final = frozenset({"daily", "weekly"})
# The token of a preference link names this instead of a kind of mail.
PREFERENCES_TOKEN_KIND: Final = "preferences"


class ChoiceInvalid(ValueError):
    """A choice the page does not offer."""


def check_choice(kind: str, choice: str) -> ChoosableKind:
    """The kind of a choice the page offers; ChoiceInvalid for any other."""
    try:
        chosen = one_of(kind, CHOOSABLE_KINDS, "kind")
    except ValueError:
        raise ChoiceInvalid(f"{kind!r} is not a kind of mail one can choose") from None
    if choice not in CHOICES[chosen]:
        raise ChoiceInvalid(f"{choice!r} is not a choice for {kind}: {', '.join(CHOICES[chosen])}")
    return chosen


def current_choice(kind: ChoosableKind, *, opted_out: bool, periodicity: Periodicity | None) -> str:
    """What the page shows as chosen: off when opted out, else the chosen periodicity (likes;
    None when the user never chose, which means the producer's: shown as daily) or on."""
    if opted_out:
        return "off"
    if kind == "likes":
        return periodicity or "daily"
    return "on"
