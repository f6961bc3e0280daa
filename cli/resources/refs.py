"""What a user types for a resource (`evalrun/after`, `er`, `FineTuneRuns`) and what it means: one reading."""

from __future__ import annotations

from dataclasses import dataclass

from cotlab.api.kinds import KINDS

from ..terminal.errors import UsageError

# Every spelling kubectl accepts for a kind: the Kind, singular, plural and short names, in any case.
KIND_ALIASES: dict[str, str] = {
    alias.lower(): k.kind for k in KINDS for alias in (k.kind, k.singular, k.plural, *k.short_names)
}
KIND_NAMES = tuple(k.singular for k in KINDS)


class BadReference(UsageError):
    """A kind or KIND/NAME that names nothing; the message lists what is valid."""


@dataclass(frozen=True)
class Ref:
    """A kind and, when given, a name."""

    kind: str
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}" if self.name else self.kind.lower()


def parse_kind(text: str) -> str:
    """The Kind for any accepted spelling; an unknown one raises with the valid kinds."""
    kind = KIND_ALIASES.get(text.strip().lower())
    if kind is None:
        raise BadReference(f"unknown kind {text!r}; valid kinds: {', '.join(KIND_NAMES)} (or their short names)")
    return kind


def parse_ref(text: str, *, default_kind: str | None = None, need_name: bool = False) -> Ref:
    """`KIND/NAME`, `KIND`, or (with `default_kind`) a bare `NAME`."""
    kind_text, slash, name = text.partition("/")
    if not slash:
        if default_kind is not None:
            return Ref(default_kind, text)
        kind = parse_kind(kind_text)
        if need_name:
            raise BadReference(f"{text!r}: name the resource as KIND/NAME, e.g. {kind.lower()}/my-run")
        return Ref(kind)
    if not name or "/" in name:
        raise BadReference(f"{text!r}: expected KIND/NAME, e.g. evalrun/my-run")
    kind = parse_kind(kind_text)
    if default_kind is not None and kind != default_kind:
        raise BadReference(f"{text!r}: expected a {default_kind}, got a {kind}")
    return Ref(kind, name)
