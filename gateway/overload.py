"""DOIC (RFC 7683) as a reporting node, without sockets or clocks (sans-IO).

A peer that sends OC-Supported-Features in its requests is a reacting node. Its answers then
carry OC-Supported-Features naming the loss algorithm (OLR_DEFAULT_ALGO), and, while the
worker pool is overloaded, an OC-OLR host report: the percentage of its traffic the peer
should abate.

The reduction is a feedback loop on what the gateway sees once a second:
- requests shed with 3004 (no worker slot, or the peer's fair share used up) while the
  queue is busy (the pool's occupancy above START, or more than BURST of the requests
  shed) are the excess. They were shed from
  traffic the reacting nodes had already reduced by the report in force, so the reduction
  that would have let nothing be shed compounds the two:
  1 - (1 - reduction) x (1 - shed share), in whole percent rounded up. At twice the
  capacity, one update asks for 50% and the next finds nothing shed. Sheds while the queue
  has drained came from a burst that filled a worker's slots within a loop turn, which a
  lower rate does not prevent: they do not raise the report;
- a filling queue (the pool's occupancy above START) with nothing shed and no report in
  force is the onset: it starts a modest reduction (up to QUEUE_REDUCTION);
- otherwise the report in force is probed downwards: while the queue is busy, or sheds
  come from bursts, it lets PROBE more traffic through (at least one point less); once the
  queue has drained with nothing shed, it halves. Sheds on a busy queue compound it up
  again, so it settles within a few points of the edge, near 100% as well as near 0, and a
  reacting node is back to full traffic in seconds once the overload passes. (A report
  raised on sheds measured before the previous one took effect asks for too much; the
  probe takes that back.)

The sequence number starts from the wall clock (seconds) so that it keeps growing across a
gateway restart, and grows with each change of the report, as RFC 7683 requires. When the
overload ends, one more report with OC-Validity-Duration 0 tells reacting nodes to stop
abating at once rather than waiting for the last report to expire.
"""

from __future__ import annotations

from chargegw.codec import Avp

OLR_DEFAULT_ALGO = 1  # OC-Feature-Vector bit: the loss abatement algorithm
HOST_REPORT = 0
START = 0.7  # occupancy at which abatement starts
FULL = 1.0  # occupancy at which the onset reduction reaches QUEUE_REDUCTION
QUEUE_REDUCTION = 25  # a full queue alone says there is pressure, not how much
MAX_REDUCTION = 95  # some traffic always passes, so recovery can be seen
PROBE = 0.05  # with nothing shed and a busy queue: let this much more traffic through
# A share of sheds above this is overload whatever the queue looked like at the update (the
# occupancy is one sample, and one peer's fair share keeps it at 0.75 at most); below it,
# sheds on a drained queue are bursts.
BURST = 0.2
END_REPORTS_S = 5.0  # how long the "ended" report (validity 0) is still sent


def _up(percent: float) -> int:
    """Whole percent, rounded up (a float a hair above a whole number is that number)."""
    return -int(-round(percent, 6) // 1)


class OverloadReporter:
    """The current report, and the AVP octets every answer to a reacting node gets."""

    def __init__(self, *, validity: int = 10, now_wall: float = 0.0) -> None:
        self.validity = validity
        self.reduction = 0
        self.sequence = int(now_wall)
        self.ended_at: float | None = None
        self.reports = 0  # report changes made (a metric)
        self._extra = self._encode()

    def update(self, now: float, occupancy: float, shed_share: float) -> None:
        """Called once a second with the pool's occupancy (0..1) and the share of requests
        shed (3004) since the previous call (see the module docstring)."""
        held = self.reduction
        busy = occupancy > START or shed_share > BURST
        if shed_share > 0.0 and busy:
            need = 100.0 * (1.0 - (1.0 - held / 100.0) * (1.0 - min(1.0, shed_share)))
            new = max(held, _up(need))
        elif not busy and not shed_share:  # drained, nothing shed: the overload has passed
            new = held // 2
        elif held == 0:
            new = _up((occupancy - START) / (FULL - START) * QUEUE_REDUCTION) if busy else 0
        else:  # busy with nothing shed, or sheds from a burst: let a little more through
            new = max(0, min(held - 1, int(100 - (100 - held) * (1 + PROBE))))
        new = min(MAX_REDUCTION, new)
        if new == self.reduction:
            if self.ended_at is not None and now - self.ended_at > END_REPORTS_S:
                self.ended_at = None
                self._extra = self._encode()
            return
        if new == 0:
            self.ended_at = now
        else:
            self.ended_at = None
        self.reduction = new
        self.sequence += 1
        self.reports += 1
        self._extra = self._encode()

    @property
    def extra(self) -> bytes:
        """The AVPs to append to an answer for a reacting node (already padded)."""
        return self._extra

    def _encode(self) -> bytes:
        out = Avp.new("OC-Supported-Features", {"oc_feature_vector": OLR_DEFAULT_ALGO}).encode()
        if self.reduction or self.ended_at is not None:
            olr = {
                "oc_sequence_number": self.sequence,
                "oc_report_type": HOST_REPORT,
                "oc_reduction_percentage": self.reduction,
                "oc_validity_duration": self.validity if self.reduction else 0,
            }
            out += Avp.new("OC-OLR", olr).encode()
        return out
