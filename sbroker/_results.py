"""The answers a broker or regulator gives: ``Go``, ``Drop``, ``Stop``, ``NotFound``.

Every time is an ``int`` of nanoseconds. ``Go`` and ``Drop`` are answered on
every request, so they are small immutable tuples underneath (built in one C
call on the hot path) with named read-only fields: usable in ``match``
statements (``case Go(value=v):``), printable, hashable, and equal only to a
result of the same class with equal fields (never to a plain tuple).
``Stop`` and ``NotFound`` are frozen attrs classes.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, ClassVar, Generic

import attrs

if TYPE_CHECKING:
    from typing import Self

    from typing_extensions import TypeVar

    #: The type of ``Go.value``; a bare ``Go`` is ``Go[Any]``.
    ValueT = TypeVar("ValueT", default=Any, covariant=True)
else:  # typing.TypeVar takes no default before Python 3.13; only checkers read it
    from typing import TypeVar

    ValueT = TypeVar("ValueT", covariant=True)

#: ``new_result(Go, (ref, value, relative_time, sojourn_time))``: a result without
#: a Python frame (the hosts' hot path); the fields are not checked.
new_result = tuple.__new__


class _Result(tuple[Any, ...]):
    """An immutable result: a tuple of its fields, equal only to its own class."""

    __slots__ = ()
    __match_args__: ClassVar[tuple[str, ...]]

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = tuple.__hash__

    def _unordered(self, other: object) -> bool:
        return NotImplemented  # type: ignore[no-any-return]  # results have no order

    __lt__ = __le__ = __gt__ = __ge__ = _unordered

    def __getnewargs__(self) -> tuple[Any, ...]:
        return tuple(self)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={field!r}" for name, field in zip(self.__match_args__, self))
        return f"{type(self).__name__}({fields})"


class Go(_Result, Generic[ValueT]):
    """A match was made.

    ``Go`` is generic in its value: annotate ``Go[Job]`` where the
    counterparty's value is known to be a ``Job`` (a bare ``Go`` is ``Go[Any]``).

    Attributes:
        ref: unique per match; both sides of a match get an equal ``ref``
            (for a regulator, the permit).
        value: the counterparty's request value (for a regulator, the regulator).
        relative_time: ns; ``> 0``: the caller waited for the counterparty,
            ``< 0``: the counterparty had been waiting for the caller.
        sojourn_time: ns from the caller's request to this answer, ``>= 0``.
    """

    __slots__ = ()
    __match_args__ = ("ref", "value", "relative_time", "sojourn_time")

    def __new__(cls, ref: Hashable, value: ValueT, relative_time: int, sojourn_time: int) -> Self:
        return tuple.__new__(cls, (ref, value, relative_time, sojourn_time))

    @property
    def ref(self) -> Hashable:
        """Unique per match; both sides of a match get an equal ``ref``."""
        return self[0]  # type: ignore[no-any-return]

    @property
    def value(self) -> ValueT:
        """The counterparty's request value."""
        return self[1]  # type: ignore[no-any-return]

    @property
    def relative_time(self) -> int:
        """ns; ``> 0``: the caller waited, ``< 0``: the counterparty had waited."""
        return self[2]  # type: ignore[no-any-return]

    @property
    def sojourn_time(self) -> int:
        """ns from the caller's request to this answer, ``>= 0``."""
        return self[3]  # type: ignore[no-any-return]


class Drop(_Result):
    """The request was dropped: no match was made.

    Attributes:
        sojourn_time: ns from the caller's request to the drop, ``>= 0``;
            ``0`` for a request refused at the door (full queue, PIE gate,
            ``nb_ask`` with nobody waiting).
    """

    __slots__ = ()
    __match_args__ = ("sojourn_time",)

    def __new__(cls, sojourn_time: int) -> Self:
        return tuple.__new__(cls, (sojourn_time,))

    @property
    def sojourn_time(self) -> int:
        """ns from the caller's request to the drop, ``>= 0``."""
        return self[0]  # type: ignore[no-any-return]


#: The answer of a request refused at the door; results are immutable, so one will do.
REFUSED = Drop(0)


@attrs.frozen
class Stop:
    """``regulator.continue_`` refused: the task must stop; its permit is released."""

    sojourn_time: int


@attrs.frozen
class NotFound:
    """``regulator.continue_`` on a permit the regulator does not know."""

    sojourn_time: int
