"""What a DynamoDB Number can hold, for every module that validates a value before it is stored.

Dependency-free on purpose: the config (imported by every function) and the OpenAI adapter (poller only)
both check numbers against it, and the alerter must not import `requests` to do so.
"""

from __future__ import annotations

from decimal import Clamped, Context, Decimal, DecimalException, Inexact, Overflow, Rounded, Underflow

# DynamoDB's Number: at most 38 significant digits, magnitude 1E-130 to 9.9999999999999999999999999999999999999E+125
# (or zero). boto3 serializes numbers through this context (boto3.dynamodb.types.DYNAMODB_CONTEXT) and
# refuses any value it would have to round, so a value outside it fails the whole `put_item`.
DYNAMODB_DIGITS = 38
DYNAMODB_MIN_ADJUSTED_EXPONENT = -130
DYNAMODB_MAX_ADJUSTED_EXPONENT = 125
DYNAMODB_INT_LIMIT = 10**DYNAMODB_DIGITS
_DYNAMODB_CONTEXT = Context(
    Emin=-128, Emax=126, prec=DYNAMODB_DIGITS, traps=[Clamped, Overflow, Inexact, Rounded, Underflow]
)


def dynamodb_number(value: Decimal) -> Decimal | None:
    """`value` in a form DynamoDB stores exactly (trailing zeros dropped only if they are what does not fit),
    or None when no exact form fits: more than 38 significant digits, or a magnitude out of range."""
    if not value.is_finite():
        return None
    for candidate in (value, _without_trailing_zeros(value)):
        if not candidate.is_zero() and not (
            DYNAMODB_MIN_ADJUSTED_EXPONENT <= candidate.adjusted() <= DYNAMODB_MAX_ADJUSTED_EXPONENT
        ):
            return None
        try:
            _DYNAMODB_CONTEXT.create_decimal(candidate)
        except DecimalException:
            continue
        return candidate
    return None


def _without_trailing_zeros(value: Decimal) -> Decimal:
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if not any(digits):
        return Decimal(0)
    while digits[-1] == 0:
        digits, exponent = digits[:-1], exponent + 1
    return Decimal((sign, digits, exponent))


def dynamodb_misfit(value: Decimal) -> str:
    """Why `value` cannot be stored as a DynamoDB number (for a message; never the whole value)."""
    if not value.is_finite():
        return f"{value}, expected a finite number"
    if not value.is_zero() and not (
        DYNAMODB_MIN_ADJUSTED_EXPONENT <= value.adjusted() <= DYNAMODB_MAX_ADJUSTED_EXPONENT
    ):
        return f"{value:.3e}, outside DynamoDB's range (magnitude 1E-130 to 9.99E+125)"
    digits = len(_without_trailing_zeros(value).as_tuple().digits)
    return f"a number with {digits} significant digits, more than DynamoDB's {DYNAMODB_DIGITS}"
