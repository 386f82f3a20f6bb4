"""The errors a user of promo-sandbox can see.

Every error says what is wrong, where (a JSON pointer in wire names, or the
campaign and rule) and the value, and where it can, the likely fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

__all__ = [
    "DefinitionError",
    "Problem",
    "ReentrantCallError",
    "RuleError",
    "SandboxError",
    "TransitionError",
    "UnknownEntityError",
    "ValidationError",
]


class SandboxError(Exception):
    """Base class of every error promo-sandbox raises on purpose."""


@attrs.frozen
class Problem:
    """One thing wrong with a payload.

    ``pointer`` is a JSON pointer (RFC 6901) in wire names, for example
    ``/cartItems/2/quantity``; ``message`` says the field, the rule and the value.
    """

    pointer: str
    message: str

    def __str__(self) -> str:
        pointer = self.pointer or "/"
        if len(pointer) > 200:  # the pointer stays exact; only its display is shortened
            pointer = f"{pointer[:120]}...{pointer[-60:]}"
        if not pointer.isascii():
            # A key with an unpaired surrogate: shown as its escape, so the text can be
            # printed or sent as UTF-8 (the pointer itself stays exact).
            pointer = pointer.encode("utf-8", "backslashreplace").decode("utf-8")
        return f"{pointer}: {self.message}"

    def within(self, prefix: str) -> Problem:
        """The same problem, seen from an enclosing document at ``prefix``."""
        return Problem(prefix + self.pointer, self.message)


def escape_pointer_token(token: str | int) -> str:
    """Escape one reference token for a JSON pointer (RFC 6901, section 3)."""
    return str(token).replace("~", "~0").replace("/", "~1")


class ValidationError(SandboxError, ValueError):
    """A payload (or a model built in Python) breaks Talon.One's schema.

    ``errors`` lists every problem found, not only the first.
    """

    def __init__(self, errors: Iterable[Problem], *, subject: str = "payload") -> None:
        self.errors: list[Problem] = sorted(set(errors), key=lambda p: (p.pointer, p.message))
        self.subject = subject
        super().__init__(self._render())

    def _render(self) -> str:
        count = len(self.errors)
        head = f"invalid {self.subject}: {count} problem{'s' if count != 1 else ''}"
        return "\n".join([head, *(f"  {p}" for p in self.errors)])

    @property
    def pointers(self) -> list[str]:
        """The pointers of all problems, sorted."""
        return [p.pointer for p in self.errors]

    def within(self, prefix: str) -> ValidationError:
        """The same problems, with every pointer under ``prefix``."""
        return ValidationError([p.within(prefix) for p in self.errors], subject=self.subject)


class TransitionError(SandboxError):
    """A session update asks for a state change Talon.One does not allow.

    Names the session, the current state, the asked state and the legal moves.
    """

    def __init__(
        self,
        session_id: str,
        current: str | None,
        asked: str,
        legal: Sequence[str],
        *,
        detail: str = "",
    ) -> None:
        self.session_id = session_id
        self.current = current
        self.asked = asked
        self.legal = tuple(legal)
        where = "a new session" if current is None else f"state {current!r}"
        moves = ", ".join(self.legal) if self.legal else "none (the state is final)"
        message = f"session {session_id!r}: cannot go from {where} to {asked!r}"
        if detail:
            message += f": {detail}"
        message += f". Legal moves: {moves}"
        super().__init__(message)


class RuleError(SandboxError):
    """A user's condition or effect raised while a session was evaluated.

    The original exception is chained as ``__cause__``.
    """

    def __init__(
        self,
        campaign: str,
        rule: str,
        part: str,
        original: BaseException | None = None,
        *,
        problem: str | None = None,
    ) -> None:
        self.campaign = campaign
        self.rule = rule
        self.part = part
        if problem is None:
            problem = f"raised {type(original).__name__}: {original}"
        super().__init__(f"campaign {campaign!r}, rule {rule!r}: {part} {problem}")


class ReentrantCallError(SandboxError):
    """A rule (condition, amount or ``where=``) called the sandbox it runs in.

    Rules must be pure functions of the context: an update from inside an
    evaluation would commit counters the outer evaluation then counts again."""

    def __init__(self, call: str) -> None:
        self.call = call
        super().__init__(
            f"{call} was called while the sandbox is evaluating a rule: rules must not "
            "call the sandbox they run in (read what you need from the context instead)"
        )


class DefinitionError(SandboxError, ValueError):
    """A campaign, coupon, referral, rule or limit is defined wrongly."""


class UnknownEntityError(SandboxError, LookupError):
    """A lookup by id or code found nothing; the message suggests close names."""
