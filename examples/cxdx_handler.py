"""A small Cx/Dx (TS 29.229) HSS as a chargegw application: the worked example of
"write your own application" (see workers/charging/README.md).

Register it in the config and every worker serves it:

    [[applications]]
    app_id = 16777216
    vendor_id = 10415
    handler = "examples.cxdx_handler:CxDxApp"    # any importable "module:attr"
    [applications.config]
    scscf = "sip:scscf.ims.example"
    users = { "sip:alice@ims.example" = "alice@ims.example" }

It answers UAR (300), SAR (301) and LIR (302) from an in-memory table of registrations,
with the 3GPP Experimental-Result codes. The table lives in one worker process: a real
HSS would keep it in a shared store, as the charging applications do.
"""

from __future__ import annotations

from typing import Any

import msgspec

from chargegw.codec import Message

APP_CXDX = 16777216
VENDOR_3GPP = 10415
UAR, SAR, LIR = 300, 301, 302
FIRST_REGISTRATION, SUBSEQUENT_REGISTRATION = 2001, 2002
USER_UNKNOWN, IDENTITIES_DONT_MATCH, IDENTITY_NOT_REGISTERED = 5001, 5002, 5003


class CxConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The application's own config table; an empty table gives a usable default."""

    scscf: str = "sip:scscf.ims.example"
    users: dict[str, str] = msgspec.field(
        default_factory=lambda: {"sip:alice@ims.example": "alice@ims.example"}
    )


class CxDxApp:
    """HSS side of Cx. `setup` gets the WorkerContext once; `handle` gets each request."""

    app_id = APP_CXDX

    def __init__(self) -> None:
        self.cfg = CxConfig()
        self.registered: dict[str, str] = {}  # public identity -> serving S-CSCF
        self.ctx: Any = None

    def setup(self, ctx: Any) -> None:
        self.ctx = ctx
        try:
            self.cfg = msgspec.convert(dict(ctx.config), CxConfig)
        except msgspec.ValidationError as exc:
            raise ValueError(f"Cx config: {exc}") from None

    def _answer(
        self, req: Message, result: int | None = None, experimental: int | None = None, **avps: Any
    ) -> Message:
        if experimental is not None:
            avps["experimental_result"] = {
                "vendor_id": VENDOR_3GPP,
                "experimental_result_code": experimental,
            }
        return req.answer(
            result,
            origin_host=self.ctx.origin_host,
            origin_realm=self.ctx.origin_realm,
            vendor_specific_application_id={
                "vendor_id": VENDOR_3GPP,
                "auth_application_id": APP_CXDX,
            },
            auth_session_state=1,
            **avps,
        )

    def handle(self, request: Message, rctx: Any = None) -> Message:
        public = request.public_identity
        if isinstance(public, list):  # SAR allows several
            public = public[0] if public else None
        if request.code in (UAR, SAR, LIR) and public is None:
            from chargegw.codec import Avp

            return self._answer(request, 5005, failed_avp=Avp.new("Public-Identity", ""))
        private = self.cfg.users.get(str(public))
        if request.code == UAR:
            if private is None:
                return self._answer(request, experimental=USER_UNKNOWN)
            if request.user_name is not None and request.user_name != private:
                return self._answer(request, experimental=IDENTITIES_DONT_MATCH)
            code = SUBSEQUENT_REGISTRATION if public in self.registered else FIRST_REGISTRATION
            return self._answer(request, experimental=code, server_name=self.cfg.scscf)
        if request.code == SAR:
            if private is None:
                return self._answer(request, experimental=USER_UNKNOWN)
            self.registered[str(public)] = str(request.server_name or self.cfg.scscf)
            return self._answer(request, 2001, user_name=private)
        if request.code == LIR:
            scscf = self.registered.get(str(public))
            if scscf is None:
                code = USER_UNKNOWN if private is None else IDENTITY_NOT_REGISTERED
                return self._answer(request, experimental=code)
            return self._answer(request, 2001, server_name=scscf)
        return self._answer(request, 3001)  # MAR, RTR, PPR: not in this example
