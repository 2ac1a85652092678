"""What a client believes of the records it reads: anyone can sign a record, so none is taken at its word.

- **Proved before planned.** A record's peer enters a route only after it answered a Ping with a nonce from
  this client by a proof signed with the record's key, for the record's model and first layer
  (``swarm.net.protocol.check_pong``). A record at a dead address, or at the address of somebody else's peer,
  never gets there. Each DHT read proves at most ``MAX_PROBES`` new peers, drawn at random among those not
  yet proved, so a flood of records costs a bounded number of pings per read and cannot keep honest peers
  out for long (``to_probe``).
- **Measured before preferred.** Before a route that uses a peer is opened for the first time, the client
  times a few one-token steps through that peer alone (``routing/swarm_client.py``, ``_measure``): the
  fastest round trip gives a speed the peer certainly has, link included (``measured_throughput``). A
  claim over ``LIE_FACTOR`` times that is a lie (``lies``): the peer is timed once more ``REMEASURE_AFTER_S``
  later (one stall of a busy machine must not ban an honest peer) and, when the faster timing still says
  so, banned for the rest of the client's life. Short of a lie, a claim counts for at most ``PLAN_FACTOR`` times the measurement (``effective``;
  more than 1, since the measurement holds the link, which the planner counts on its own).

What is left (docs/architecture.md, "Strangers"): a peer that computes honestly while measured can slow down
later (the failover deadline still catches a stall), and outputs are not yet spot-checked against a replica.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from swarm.net.records import PeerRecord

MAX_PROBES = 16  # new peers proved per DHT read
# a claimed throughput this many times over the measured one is a lie. Generous on purpose: the measurement
# includes the link and the peer's per-step overhead, and on a busy machine an honest small span can time
# a hundred times slower than it measured itself idle; a lie that wins routes is orders of magnitude out.
LIE_FACTOR = 1000.0
PLAN_FACTOR = 10.0  # a claim counts for at most this many times the measured speed when routes are planned
MEASURE_STEPS = 3  # one-token steps timed (after one to warm up) when a peer is measured
REMEASURE_AFTER_S = 1.0  # a timing that says "lie" is taken again after this pause before the peer is banned


def proof_key(record: PeerRecord) -> tuple[str, int, str]:
    """What a proof was for: the peer, the first layer it proved, the address it answered at."""
    return record.peer_id, record.start, record.addrs[0]


def to_probe(records: Sequence[PeerRecord], proven: Collection[tuple[str, int, str]], avoid: Collection[str],
             rng: random.Random, limit: int = MAX_PROBES) -> list[PeerRecord]:
    """The records whose peers to prove now: up to ``limit`` of those neither proved nor avoided, at random."""
    fresh = list({r.peer_id: r for r in records
                  if proof_key(r) not in proven and r.peer_id not in avoid}.values())
    return fresh if len(fresh) <= limit else rng.sample(fresh, limit)


def measured_throughput(step_times_s: Sequence[float]) -> float:
    """Tokens/s a peer certainly runs, link included, from the round trips of one-token steps through it:
    the fastest (the one least delayed by whatever else the machines were doing)."""
    return 1.0 / max(min(step_times_s), 1e-9)


def lies(claimed: float, measured: float, factor: float = LIE_FACTOR) -> bool:
    return claimed > factor * measured


def effective(records: Sequence[PeerRecord], measured: Mapping[tuple[str, int], float],
              factor: float = PLAN_FACTOR) -> list[PeerRecord]:
    """The records with each measured peer's throughput at most ``factor`` times what was measured."""
    out = []
    for r in records:
        seen = measured.get((r.peer_id, r.start))
        limit = None if seen is None else factor * seen
        out.append(replace(r, throughput=limit) if limit is not None and limit < r.throughput else r)
    return out
