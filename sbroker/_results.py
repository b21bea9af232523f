"""The answers a broker or regulator gives: ``Go``, ``Drop``, ``Stop``, ``NotFound``.

All are frozen attrs classes, usable in ``match`` statements
(``case Go(value=v):``). Every time is an ``int`` of nanoseconds.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Generic

import attrs

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    #: The type of ``Go.value``; a bare ``Go`` is ``Go[Any]``.
    ValueT = TypeVar("ValueT", default=Any, covariant=True)
else:  # typing.TypeVar takes no default before Python 3.13; only checkers read it
    from typing import TypeVar

    ValueT = TypeVar("ValueT", covariant=True)


@attrs.frozen
class Go(Generic[ValueT]):
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

    ref: Hashable
    value: ValueT
    relative_time: int
    sojourn_time: int


@attrs.frozen
class Drop:
    """The request was dropped: no match was made.

    Attributes:
        sojourn_time: ns from the caller's request to the drop, ``>= 0``;
            ``0`` for a request refused at the door (full queue, PIE gate,
            ``nb_ask`` with nobody waiting).
    """

    sojourn_time: int


@attrs.frozen
class Stop:
    """``regulator.continue_`` refused: the task must stop; its permit is released."""

    sojourn_time: int


@attrs.frozen
class NotFound:
    """``regulator.continue_`` on a permit the regulator does not know."""

    sojourn_time: int


_new_object = object.__new__
_set_ref, _set_value = Go.ref.__set__, Go.value.__set__  # type: ignore[attr-defined,misc]
_set_relative, _set_sojourn = Go.relative_time.__set__, Go.sojourn_time.__set__  # type: ignore[attr-defined]


def new_go_pair(ref: Hashable, caller_value: Any, waiter_value: Any, waited: int) -> tuple[Go, Go]:
    """The two ``Go``s of one match, built through their slots (the hot path).

    The waiter, whose request had waited ``waited`` ns, gets the caller's value;
    the caller, answered at once, gets the waiter's value (api.md Results).
    """
    to_waiter: Go = _new_object(Go)
    _set_ref(to_waiter, ref)
    _set_value(to_waiter, caller_value)
    _set_relative(to_waiter, waited)
    _set_sojourn(to_waiter, waited)
    to_caller: Go = _new_object(Go)
    _set_ref(to_caller, ref)
    _set_value(to_caller, waiter_value)
    _set_relative(to_caller, -waited)
    _set_sojourn(to_caller, 0)
    return to_waiter, to_caller
