"""The client's view of the swarm (SwarmCore) and its event-loop thread (SwarmClient).

SwarmCore is the async part: DHT reads, route planning, one PeerLink per peer, the failure history shared
by the client's sessions. Discovery, the connector and the clock are injected, so the sim tier runs real
sessions over an in-memory network. SwarmClient adds what the synchronous public API needs: the client's
one asyncio loop in a background thread, with every public call handing a coroutine to it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from typing import Any, TypeVar

from routing.config import ClientConfig
from routing.failover import FailureHistory, avoided
from routing.link import PeerLink
from routing.planner import Route, plan_route
from routing.session import InferenceSession
from swarm.errors import HopFailedError, RoutingError
from swarm.records import PeerRecord
from swarm.transport import open_channel

log = logging.getLogger("molink.client")
T = TypeVar("T")


Connector = Callable[[str], Awaitable[Any]]  # address -> a connected Channel


class SwarmCore:
    def __init__(self, model_key: str, num_layers: int, discovery: Any, config: ClientConfig | None = None,
                 *, connect: Connector | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.model_key = model_key
        self.num_layers = num_layers
        self.discovery = discovery
        self.config = config or ClientConfig()
        self.clock = clock
        self._connect = connect or (lambda addr: open_channel(addr, timeout=self.config.connect_timeout_s))
        self._links: dict[str, PeerLink] = {}
        self.failures = FailureHistory()  # shared by this client's sessions: a dead peer is avoided by all
        self.known: list[PeerRecord] = []  # the last records read from the DHT

    async def records(self) -> list[PeerRecord]:
        found = await self.discovery.read(self.model_key)
        if not found:  # maybe cut off (a restarted bootstrap, a lost link): redial the initial peers, read again
            await self.discovery.rejoin()
            found = await self.discovery.read(self.model_key)
        self.known = found
        return self.known

    async def replacement_route(self, start: int, end: int, avoid: Collection[str]) -> Route:
        """A route for layers [start, end) during failover: planned from the records already known when
        they suffice (a DHT read can stall while a node of the DHT hangs), else from fresh reads."""
        try:
            return plan_route(self.known, self.num_layers, start=start, end=end, avoid=avoid, model=self.model_key)
        except RoutingError:
            return await self.wait_route(start, end, avoid)

    async def plan(self, start: int = 0, end: int | None = None, avoid: Collection[str] = ()) -> Route:
        return plan_route(await self.records(), self.num_layers, start=start, end=end, avoid=avoid,
                          model=self.model_key)

    async def wait_route(self, start: int = 0, end: int | None = None, avoid: Collection[str] = (),
                         timeout_s: float | None = None) -> Route:
        """Plan a route for layers [start, end), re-reading the DHT until one exists or the deadline passes
        (then raise why not)."""
        deadline = time.monotonic() + (self.config.route_wait_s if timeout_s is None else timeout_s)
        while True:
            try:
                return await self.plan(start, end, avoid)
            except RoutingError:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(0.2)

    async def link(self, addr: str) -> PeerLink:
        link = self._links.get(addr)
        if link is None or link.closed:
            link = PeerLink(await self._connect(addr), addr)
            self._links[addr] = link
        return link

    async def open_session(self, max_length: int, batch: int = 1) -> InferenceSession:
        """A session on the cheapest live route; a hop that cannot take it (a dead peer whose record has
        not expired yet, a full peer) is put in back-off and the route planned again."""
        failures = 0
        while True:
            route = await self.wait_route(avoid=avoided(self.failures, self.clock(), self.config.backoff))
            session = InferenceSession(self, route, max_length=max_length, batch=batch)
            try:
                await session.open()
                return session
            except HopFailedError as e:
                failures += 1
                if failures > self.config.max_recoveries:
                    raise
                hop = route.hops[e.failure.hop_index]
                log.warning("could not open a session on %s: %s; planning around it", hop.addr, e)
                self.failures = self.failures.record(hop.peer_id, self.clock())

    async def aclose(self) -> None:
        for link in self._links.values():
            await link.close()
        self._links.clear()
        await self.discovery.shutdown()


class SwarmClient(SwarmCore):
    """A SwarmCore on its own event-loop thread, joined to the swarm through a hivemind DHT node."""

    def __init__(self, model_key: str, num_layers: int, initial_peers: Sequence[str],
                 config: ClientConfig | None = None) -> None:
        from swarm.dht import HivemindDiscovery

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="molink-client", daemon=True)
        self._thread.start()
        config = config or ClientConfig()
        try:
            discovery = self.run(HivemindDiscovery.create(
                list(initial_peers), listen=config.dht_listen, client_mode=True))
        except BaseException:
            self._stop_loop()
            raise
        super().__init__(model_key, num_layers, discovery, config)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the client's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if not self._loop.is_running():
            return
        try:
            self.run(self._aclose())
        finally:
            self._stop_loop()

    async def _aclose(self) -> None:
        await self.aclose()
        current = asyncio.current_task()
        leftovers = [t for t in asyncio.all_tasks() if t is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
