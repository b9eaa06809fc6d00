"""Answer rendering for Gy: a decision (`Answer`) and a store outcome become the CCA bytes.

Pure: no store, no loop. The MSCC blocks an answer carries repeat from one answer to the
next, so they are built once per shape and shared (`Frozen`: the writer keeps their bytes).
"""

from __future__ import annotations

from typing import Any

from chargegw.codec import Avp, ResultCode
from chargegw.codec.compiled import Encoded, Frozen

from . import ccr, core
from .config import GyConfig

APP_ID = 4
FLAG_P, FLAG_E = 0x40, 0x20
SINGLE = ("granted_service_unit", "validity_time", "final_unit_indication")  # of a block, top level
UNIT_AVP = {"time": "cc_time", "volume": "cc_total_octets", "units": "cc_service_specific_units"}


class Answer:
    """What to answer: the result, the AVPs beside it, and for errors the Failed-AVP content
    (the AVPs it holds) and Error-Message."""

    __slots__ = ("result", "extra", "failed", "error_message")

    def __init__(
        self,
        result: int,
        extra: dict[str, Any] | None = None,
        failed: list[Avp] | None = None,
        error_message: str | None = None,
    ) -> None:
        self.result = int(result)
        self.extra = extra or {}
        self.failed = failed
        self.error_message = error_message


class Renderer:
    """Turns outcomes into Answers and Answers into CCA bytes, for one configuration."""

    def __init__(self, cfg: GyConfig, origin_host: str, origin_realm: str) -> None:
        self.origin_host = origin_host
        self.origin_realm = origin_realm
        self.quota = q = cfg.quota
        self.threshold = {
            "time": ("time_quota_threshold", q.time_quota_threshold),
            "volume": ("volume_quota_threshold", q.volume_quota_threshold),
            "units": ("unit_quota_threshold", q.unit_quota_threshold),
        }
        fu = cfg.final_unit
        self.fui: dict[str, Any] = (
            {"final_unit_action": 1, "redirect_server": {
                "redirect_address_type": fu.redirect_address_type,
                "redirect_server_address": fu.redirect_address}}
            if fu.action == "redirect" else {"final_unit_action": 0}
        )  # fmt: skip
        self.blocks: dict[tuple[Any, ...], Frozen] = {}
        self.singles: dict[int, tuple[Frozen, Frozen]] = {}  # id(block) -> (block, its AVPs)
        self.writer = w = ccr.writer()
        self._heads: dict[tuple[int, int], bytes] = {}
        # Session-Id, then the head, then CC-Request-Number: only if the grammar says so
        lead = [w.rank(k) for k in ("session_id", "result_code", "origin_host", "origin_realm",
                                    "auth_application_id", "cc_request_type", "cc_request_number")]  # fmt: skip
        self._fast = lead == sorted(lead) and len(set(lead)) == len(lead)

    def cca(self, v: Any, ans: Answer) -> bytes:
        """The CCA for request view `v` (or any object with its header fields, Session-Id and
        Proxy-Info bytes, CC-Request-Type and -Number): what the codec's `answer()` encodes."""
        w = self.writer
        rtype, number, extra = v.cc_request_type, v.cc_request_number, ans.extra
        flags = (v.flags & FLAG_P) | (FLAG_E if 3000 <= ans.result < 4000 else 0)
        if (
            type(rtype) is int and type(number) is int and self._fast
            and ans.failed is None and ans.error_message is None and not v.proxy_info_avp
            and v.session_id_avp is not None and w.after("cc_request_number", extra)
        ):  # fmt: skip
            # The common answer: the leading AVPs repeat per (result, type); only the number
            # and what follows it (in the grammar's order) change.
            hk = (ans.result, rtype)
            head = self._heads.get(hk)
            if head is None:
                head = w.body({"result_code": ans.result, "origin_host": self.origin_host,
                               "origin_realm": self.origin_realm,
                               "auth_application_id": APP_ID, "cc_request_type": rtype})  # fmt: skip
                if len(self._heads) < 1024:
                    self._heads[hk] = head
            body = v.session_id_avp + head + w.leaf("cc_request_number", number)
            if extra:
                body += w.body(extra)
            return w.frame(flags, v.hop_by_hop, v.end_to_end, body)
        fields: dict[str, Any] = {}
        if v.session_id_avp is not None:
            fields["session_id"] = Encoded(v.session_id_avp)
        fields["result_code"] = ans.result
        fields["origin_host"] = self.origin_host
        fields["origin_realm"] = self.origin_realm
        fields["auth_application_id"] = APP_ID
        if type(rtype) is int:
            fields["cc_request_type"] = rtype
        if type(number) is int:
            fields["cc_request_number"] = number
        if ans.error_message is not None:
            fields["error_message"] = ans.error_message
        if ans.failed:
            fields["failed_avp"] = ans.failed
        fields.update(extra)
        if v.proxy_info_avp:
            fields["proxy_info"] = [Encoded(p) for p in v.proxy_info_avp]
        return w.message(flags, v.hop_by_hop, v.end_to_end, fields)

    def outcome(self, v: Any, rtype: int, out: core.Outcome, services: list[Any]) -> Answer:
        """The Answer for what the store decided (`services`: the rated services)."""
        if out.failed_avp:
            value: Any = {
                "CC-Request-Number": v.cc_request_number,
                core.REF_AVP: v.cc_correlation_id or b"",
                "Requested-Action": v.requested_action,
            }.get(out.failed_avp)
            return Answer(out.result, failed=[Avp.new(out.failed_avp, value)])
        if out.result in (core.UNKNOWN_SESSION, core.USER_UNKNOWN) or (
            out.result == ResultCode.DIAMETER_END_USER_SERVICE_DENIED and not out.services
        ):
            return Answer(out.result)
        results = {r.key: r for r in out.services}
        blocks: list[Frozen] = []
        cache = self.blocks
        for s in services:
            r = results.get(s.req.key) if s.req is not None else None
            if s.tariff is None or r is None:
                key: tuple[Any, ...] = (s.rating_group, s.service_identifier, None)
            elif r.granted and rtype != core.TERMINATION:
                key = (s.rating_group, s.service_identifier, r.result, s.tariff.unit_type,
                       r.granted, rtype == core.EVENT, r.fui)  # fmt: skip
            else:
                key = (s.rating_group, s.service_identifier, r.result)
            block = cache.get(key)
            if block is None:
                block = self._block(key)
                if len(cache) < 4096:
                    cache[key] = block
            blocks.append(block)
        result = out.result
        if v.multiple_services_credit_control:
            return Answer(result, {"multiple_services_credit_control": blocks})
        if not blocks:
            return Answer(result)
        b = blocks[0]
        if result == core.SUCCESS and b["result_code"] != core.SUCCESS:
            result = b["result_code"]
        return Answer(result, self._single(b))

    def _single(self, b: Frozen) -> Frozen:
        """A single service's answer AVPs (top level, no MSCC) from its block: one Frozen
        per block, so that the writer encodes it once."""
        extra = self.singles.get(id(b))
        if extra is None or extra[0] is not b:
            fields = Frozen({k: b[k] for k in SINGLE if k in b})
            extra = (b, fields)
            if len(self.singles) < 4096:
                self.singles[id(b)] = extra
        return extra[1]

    def _block(self, key: tuple[Any, ...]) -> Frozen:
        """An MSCC answer block from its `outcome` key; never changed once built."""
        rg, sid, result = key[0], key[1], key[2]
        block = Frozen()
        if rg is not None:
            block["rating_group"] = rg
        if sid is not None:
            block["service_identifier"] = [sid]
        if result is None:
            block["result_code"] = core.RATING_FAILED
            return block
        block["result_code"] = result
        if len(key) > 3:
            unit_type, granted, event, fui = key[3:]
            q = self.quota
            block["granted_service_unit"] = {UNIT_AVP[unit_type]: granted}
            if not event:
                if q.validity_time:
                    block["validity_time"] = q.validity_time
                name, value = self.threshold[unit_type]
                if value:
                    block[name] = value
                if q.quota_holding_time:
                    block["quota_holding_time"] = q.quota_holding_time
                if fui:
                    block["final_unit_indication"] = self.fui
        return block
