"""DiameterError, the one error base, and error_answer, the one error-answer builder."""

from __future__ import annotations

import pytest

from chargegw.codec import (
    Avp,
    AvpError,
    CodecError,
    DiameterError,
    EncodeError,
    FramingError,
    ResultCode,
)


def test_diameter_error_carries_what_the_answer_needs() -> None:
    fa = Avp.new("Origin-Host", "x")
    e = DiameterError(ResultCode.DIAMETER_MISSING_AVP, "missing", [fa])
    assert e.result_code == 5005 and e.error_message == "missing" and str(e) == "missing"
    assert e.failed_avps == [fa] and e.failed_avp is fa
    assert e.e_bit is False
    assert DiameterError(3002).e_bit is True
    assert DiameterError(3002, e_bit=False).e_bit is False
    assert DiameterError(5012, e_bit=True).e_bit is True
    assert str(DiameterError(3004)) == "Result-Code 3004"


def test_codec_errors_are_diameter_errors_with_their_old_constructors() -> None:
    assert issubclass(CodecError, DiameterError)
    assert issubclass(FramingError, DiameterError)
    assert issubclass(AvpError, DiameterError)
    assert issubclass(EncodeError, DiameterError) and issubclass(EncodeError, ValueError)
    c = CodecError("bad")
    assert c.result_code == 5012 and c.error_message == "bad" and not c.failed_avps
    f = FramingError("short")
    assert f.result_code == 5015 and f.frames == [] and f.rest == b""
    assert FramingError("v", 5011).result_code == 5011
    fa = Avp.new("Session-Id", "s")
    a = AvpError(5014, "bad length", fa)
    assert a.result_code == 5014 and a.failed_avp is fa and a.failed_avps == [fa]
    assert a.header is None and repr(a) == "AvpError(5014, 'bad length')"
    a.failed_avp = None
    assert a.failed_avps == []
    with pytest.raises(DiameterError):
        raise a
