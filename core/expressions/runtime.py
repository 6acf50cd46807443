"""The run-time helpers of the row path: what generated code calls where Python's own operators do
not have the language's semantics (SQL's NULL, exact Decimal arithmetic, the bounded functions).
:data:`_HELPERS` is the namespace generated code runs in."""

from __future__ import annotations

import decimal
import operator
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .tree import _HALF_INT, _INT_LIMIT, _INT_LIMIT_BITS, MAX_INT_DIGITS, MAX_TEXT_LENGTH, ROW_ERRORS, row_error

# Generated code runs in this Decimal context (entered once per batch): + - * on Decimals are exact
# up to 1000 significant digits (PostgreSQL NUMERIC is exact); / uses 28 significant digits.
_EXACT = decimal.Context(
    prec=1000,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
_DIVIDE = decimal.Context(prec=28, traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OP_WORDS = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide", "//": "divide", "%": "take % of"}


def _name(v: Any) -> str:
    return "text" if type(v) is str else type(v).__name__


_FLOAT_DECIMALS: dict[float, Decimal] = {}


def _float_decimal(v: float) -> Decimal:
    # The shortest repr: Decimal(0.29) would be 0.28999999999999998002... Literals hit the cache.
    d = Decimal(repr(v))
    if len(_FLOAT_DECIMALS) < 4096:
        _FLOAT_DECIMALS[v] = d
    return d


def _to_decimal(v: Any) -> Decimal:
    t = type(v)
    if t is Decimal:
        return v  # type: ignore[no-any-return]
    if t is float:
        return _FLOAT_DECIMALS.get(v) or _float_decimal(v)
    if t is int:
        return Decimal(v)
    raise TypeError(f"expected a number, got {_name(v)}")


def _operand(v: Any) -> Any:
    t = type(v)
    if t is Decimal or t is int:
        return v
    if t is float:
        return _FLOAT_DECIMALS.get(v) or _float_decimal(v)
    raise TypeError


def _decimals(a: Any, b: Any, op: str) -> tuple[Any, Any]:
    """Operands for Decimal arithmetic (ints stay ints: the exact context takes them as they are)."""
    try:
        return _operand(a), _operand(b)
    except TypeError:
        raise TypeError(f"cannot {_OP_WORDS.get(op, op)} {_name(a)} and {_name(b)}") from None


def _exact_arith(op: Callable[[Any, Any], Any], symbol: str) -> Callable[[Any, Any], Any]:
    """+ - * with SQL's NULL propagation; Decimal beside float is Decimal arithmetic (exact in _EXACT)."""

    def arith(a: Any, b: Any) -> Any:
        ta, tb = type(a), type(b)
        if (ta is int or ta is float) and (tb is int or tb is float):
            return op(a, b)
        if ta is Decimal:
            if tb is Decimal or tb is int:
                return op(a, b)
            if tb is float:
                return op(a, _FLOAT_DECIMALS.get(b) or _float_decimal(b))
        elif tb is Decimal:
            if ta is int:
                return op(a, b)
            if ta is float:
                return op(_FLOAT_DECIMALS.get(a) or _float_decimal(a), b)
        if a is None or b is None:
            return None
        raise TypeError(f"cannot {_OP_WORDS[symbol]} {_name(a)} and {_name(b)}")

    return arith


_add = _exact_arith(operator.add, "+")
_sub = _exact_arith(operator.sub, "-")
_mul_numbers = _exact_arith(operator.mul, "*")


def _mul(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return _int_product(a, b)
    return _mul_numbers(a, b)


def _div(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a / b  # ZeroDivisionError is a row error
    if a is None or b is None:
        return None
    x, y = _decimals(a, b, "/")
    if not y:
        raise ZeroDivisionError("division by zero")
    return _DIVIDE.divide(x, y)


def _floordiv(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a // b
    if a is None or b is None:
        return None
    x, y = _decimals(a, b, "//")
    if not y:
        raise ZeroDivisionError("division by zero")
    q = Decimal(x) // y  # truncates toward zero; floor it
    if q * y != x and (x < 0) != (y < 0):
        q -= 1
    return q


def _mod(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a % b
    if a is None or b is None:
        return None
    x, y = _decimals(a, b, "%")
    if not y:
        raise ZeroDivisionError("division by zero")
    r = Decimal(x) % y  # sign of the dividend; make it the divisor's, as Python does
    if r and (r < 0) != (y < 0):
        r += y
    return r


def _neg(a: Any) -> Any:
    t = type(a)
    if t is int or t is float:
        return -a
    if a is None:
        return None
    if t is Decimal:
        return -a
    raise TypeError(f"cannot negate {_name(a)}")


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    ta, tb = type(a), type(b)
    if ta is not tb and (ta is Decimal or tb is Decimal):
        return _decimals(a, b, "compare")
    return a, b


def _comparison(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool | None]:
    """A comparison with SQL's NULL propagation; Decimal beside float compares as Decimals."""

    def compare(a: Any, b: Any) -> bool | None:
        if a is None or b is None:
            return None
        a, b = _comparable(a, b)
        return bool(op(a, b))

    return compare


_eq, _ne = _comparison(operator.eq), _comparison(operator.ne)
_lt, _le = _comparison(operator.lt), _comparison(operator.le)
_gt, _ge = _comparison(operator.gt), _comparison(operator.ge)


def _truth(v: Any) -> bool | None:
    if v is True or v is False or v is None:
        return v
    if type(v) is int and (v == 0 or v == 1):
        return v == 1
    raise TypeError(f"expected a condition (true/false/None), got {_name(v)} {v!r}"[:200])


def _in(v: Any, values: tuple[Any, ...] | frozenset[Any], decimals: tuple[Any, ...], negate: bool) -> bool | None:
    if v is None:
        return None
    found = v in decimals if type(v) is Decimal else v in values
    return found is not negate


def _text(v: Any, fn: str) -> str:
    if type(v) is not str:
        raise TypeError(f"{fn}() expects text, got {_name(v)}")
    return v


def _number_function(
    name: str,
    own: type,
    converted: tuple[type, ...],
    convert: Callable[[Any], Any],
    pattern: re.Pattern[str],
    parse: Callable[[str], Any],
) -> Callable[[Any], Any]:
    """int()/float()/decimal(): numbers convert (int truncates toward zero); text must be a plain number."""

    def fn(x: Any) -> Any:
        t = type(x)
        if t is own or x is None:
            return x
        if t in converted:
            return convert(x)  # int(inf/nan) raises: a row error
        if t is str and pattern.fullmatch(s := x.strip()):
            return parse(s)
        raise ValueError(f"{name}() of {_name(x)} {x!r}"[:200]) if t is str else TypeError(f"{name}() of {_name(x)}")

    return fn


def _too_many_digits(fn: str, x: Any) -> ValueError:
    shown = str(x) if type(x) is Decimal else repr(x[:40] + "...") if len(x) > 40 else repr(x)
    return ValueError(f"{fn}() of {_name(x)} {shown}"[:120] + f": more than {MAX_INT_DIGITS} digits")


def _int_of_number(x: Any) -> int:
    """int() truncating a float, Decimal or bool; a Decimal's integer part of more than MAX_INT_DIGITS
    digits is refused before it is built (int(Decimal('1e999999999')) would take minutes)."""
    if type(x) is Decimal and x.is_finite() and x.adjusted() >= MAX_INT_DIGITS:
        raise _too_many_digits("int", x)
    return int(x)


def _int_of_text(s: str) -> int:
    """A plain integer's text (matched by _INTEGER); at most MAX_INT_DIGITS significant digits, checked
    here rather than by the interpreter, whose limit a process may lift (PYTHONINTMAXSTRDIGITS=0)."""
    if len(s) > MAX_INT_DIGITS:
        digits = s.lstrip("+-").lstrip("0")  # leading zeros count for Python's limit, not for ours
        if len(digits) > MAX_INT_DIGITS:
            raise _too_many_digits("int", s)
        s = ("-" if s.startswith("-") else "") + (digits or "0")
    return int(s)


def _int_product(a: int, b: int) -> int:
    """a * b of two integers, refused (before computing it) beyond MAX_INT_DIGITS digits: a chain of
    products of columns would otherwise grow without bound."""
    if a.bit_length() + b.bit_length() - 1 > _INT_LIMIT_BITS or (p := a * b) <= -_INT_LIMIT or p >= _INT_LIMIT:
        raise ValueError(f"the product of two integers has more than {MAX_INT_DIGITS} digits")
    return p


_f_int = _number_function("int", int, (float, Decimal, bool), _int_of_number, _INTEGER, _int_of_text)
_f_float = _number_function("float", float, (int, Decimal), float, _NUMBER, float)
_f_decimal = _number_function("decimal", Decimal, (int, float), _to_decimal, _NUMBER, Decimal)


def _f_str(x: Any) -> Any:
    t = type(x)
    if t is str or x is None:
        return x
    if t is bool:
        return "true" if x else "false"
    if t is float:
        return repr(x)
    return str(x)


def _f_round(x: Any, n: Any = 0) -> Any:
    if x is None or n is None:
        return None
    if type(n) is not int:
        raise TypeError(f"round() digits must be an integer, got {_name(n)}")
    t = type(x)
    if t is Decimal:  # half away from zero, as SQL's round(numeric)
        return x.quantize(Decimal(1).scaleb(-n), rounding=decimal.ROUND_HALF_UP, context=_EXACT)
    if t is int and n < 0 and -n > x.bit_length() * 0.30103 + 2:
        return 0  # |x| < 10**-n / 2; Python's round() would build 10**-n first (minutes for n = -10**11)
    if t is int or t is float:
        return round(x, n)  # Python's: half to even on the binary value
    raise TypeError(f"round() of {_name(x)}")


def _f_abs(x: Any) -> Any:
    t = type(x)
    if t is int or t is float:
        return abs(x)
    if x is None:
        return None
    if t is Decimal:
        return abs(x)
    raise TypeError(f"abs() of {_name(x)}")


def _f_lower(s: Any) -> Any:
    return None if s is None else _text(s, "lower").translate(_ASCII_LOWER)


def _f_upper(s: Any) -> Any:
    return None if s is None else _text(s, "upper").translate(_ASCII_UPPER)


def _f_trim(s: Any) -> Any:
    return None if s is None else _text(s, "trim").strip(" ")


def _f_length(s: Any) -> Any:
    return None if s is None else len(_text(s, "length"))


def _f_concat(*parts: Any) -> Any:
    if None in parts:
        return None
    return "".join(_text(p, "concat") for p in parts)


def _f_substr(s: Any, start: Any, length: Any = 0, has_length: bool = False) -> Any:
    if s is None or start is None or length is None:
        return None
    _text(s, "substr")
    if type(start) is not int or type(length) is not int:
        raise TypeError("substr() positions must be integers")
    begin = max(start, 1)
    if not has_length:
        return s[begin - 1 :]
    if length < 0:
        raise ValueError("substr() length must not be negative")
    end = start + length  # exclusive, 1-based: the SQL window [start, start + length)
    return s[begin - 1 : end - 1] if end > begin else ""


def _f_replace(s: Any, old: Any, new: Any) -> Any:
    if s is None or old is None or new is None:
        return None
    for part in (s, old, new):
        _text(part, "replace")
    if not old:
        return s
    if len(new) > len(old) and len(s) + len(s) // len(old) * (len(new) - len(old)) > MAX_TEXT_LENGTH:
        length = len(s) + s.count(old) * (len(new) - len(old))
        if length > MAX_TEXT_LENGTH:  # nested replace() would grow exponentially; one that does not lengthen
            # the text never fails (SQL computes only those: push-down and the row path agree)
            raise ValueError(f"replace() would make text of {length} characters (more than {MAX_TEXT_LENGTH})")
    return s.replace(old, new)


def _f_nullif(a: Any, b: Any) -> Any:
    return None if a is None or _eq(a, b) is True else a


_HELPERS: dict[str, Any] = {
    name: obj for name, obj in globals().items() if name.startswith("_f_") and callable(obj)
} | {
    "_in": _in,
    "_truth": _truth,
    "_add": _add,
    "_sub": _sub,
    "_mul": _mul,
    "_div": _div,
    "_floordiv": _floordiv,
    "_mod": _mod,
    "_neg": _neg,
    "_eq": _eq,
    "_ne": _ne,
    "_lt": _lt,
    "_le": _le,
    "_gt": _gt,
    "_ge": _ge,
    "_ROW_ERRORS": ROW_ERRORS,
    "_Decimal": Decimal,
    "_int": int,
    "_type": type,
    "_float": float,
    "_localcontext": decimal.localcontext,
    "_EXACT": _EXACT,
    "_HALF_INT": _HALF_INT,
    "_MINUS_HALF_INT": -_HALF_INT,
    "_row_error": row_error,
    "__builtins__": {},
}
