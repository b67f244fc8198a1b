"""The stand-in's model manager: aspired versions in, loads and unloads out, one at a time.

`tensorflow_model_server` runs an `AspiredVersionsManager` over a `BasicManager`
(`core/aspired_versions_manager.cc`, `core/basic_manager.cc`) with the
`AvailabilityPreservingPolicy` (`model_servers/server.cc`). What a client can see of it:

- the source's aspired versions are queued, and the manage-state thread handles them every 100 ms
  (`manage_state_interval_micros`): it marks versions that left the list not aspired, adds new ones
  (state START), then takes **one** action for the whole server per round — an unload before any
  load; per model, the policy unloads the lowest un-aspired AVAILABLE version when an aspired one is
  AVAILABLE, none is aspired, or more than one is un-aspired, else loads the highest new aspired one
  (`core/availability_preserving_policy.cc`);
- a load publishes LOADING, swaps in a serving map with the version, waits for the requests that
  hold the previous map to finish, then publishes AVAILABLE; loading takes no time here;
- an unload publishes UNLOADING, swaps in a serving map without the version — from then on a
  request for it is NOT_FOUND — waits until every request holding the previous map has finished
  (a request holds the whole map, whatever version it runs on: `ServingMap::GetUntypedServableHandle`
  and `FastReadDynamicPtr::Update`), then publishes END. That wait holds the manager's lock
  (`ExecuteUnload` swaps the map under `mu_`), so no other load or unload happens meanwhile, with
  or without `--num_unload_threads` (which only runs `Unload()` itself, outside the lock, elsewhere;
  an unload takes no time here);
- a version that comes back while it is still unloading waits until it is gone
  (`HandlePendingAspiredVersionsRequests`), then loads again from START;
- `ServableStateMonitor` keeps the last state of every version ever managed, END included.
"""

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

MANAGE_STATE_SECONDS = 0.1  # AspiredVersionsManager::Options::manage_state_interval_micros


class State(enum.IntEnum):
    """`ModelVersionStatus.State` values (what `ServableState::ManagerState` maps to)."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


class Phase(enum.Enum):
    """`LoaderHarness::State`, as far as the stand-in goes through it."""

    NEW = "new"
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"  # quiescing, unloading
    DISABLED = "disabled"


@dataclass
class Harness:
    version: int
    path: str
    phase: Phase = Phase.NEW
    aspired: bool = True


@dataclass
class Snapshot:
    """One serving map: the AVAILABLE versions (name -> {version: path}), and the requests holding it."""

    versions: dict[str, dict[int, str]]
    holders: int = 0
    latest: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.latest = {name: max(versions) for name, versions in self.versions.items() if versions}


class ServingMap:
    """`BasicManager::ServingMap`: requests take the current map; a swap waits for the old one's holders."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._current = Snapshot({})

    def acquire(self) -> Snapshot:
        with self._cond:
            self._current.holders += 1
            return self._current

    def release(self, snapshot: Snapshot) -> None:
        with self._cond:
            snapshot.holders -= 1
            if snapshot.holders == 0:
                self._cond.notify_all()

    def peek(self) -> Snapshot:
        with self._cond:
            return self._current

    def update(self, versions: dict[str, dict[int, str]]) -> None:
        """Swap in a new map, then block until nobody holds the one it replaced."""
        with self._cond:
            old, self._current = self._current, Snapshot(versions)
            self._cond.wait_for(lambda: old.holders == 0)


class Monitor:
    """`ServableStateMonitor`: each version's last state, END kept; waits on events."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._states: dict[str, dict[int, tuple[State, int]]] = {}  # name -> version -> (state, event number)
        self._events = 0
        self._history: list[tuple[str, int, State]] = []

    def publish(self, name: str, version: int, state: State) -> None:
        with self._cond:
            self._events += 1
            self._states.setdefault(name, {})[version] = (state, self._events)
            self._history.append((name, version, state))
            self._cond.notify_all()

    def history(self, name: str) -> list[tuple[int, State]]:
        """Every event of one model in the order the event bus carried them (what a listener such as
        the patch's sees), for tests."""
        with self._cond:
            return [(version, state) for n, version, state in self._history if n == name]

    def events(self) -> int:
        """A mark: `wait_latest(since=mark)` sees only later events (a fresh monitor)."""
        with self._cond:
            return self._events

    def versions(self, name: str) -> dict[int, State]:
        """`GetVersionStates`: {version: state}."""
        with self._cond:
            return {version: state for version, (state, _) in self._states.get(name, {}).items()}

    def _reached(self, name: str, since: int) -> tuple[int, State] | None:
        """`HasAnyServableInStreamReachedState(name, kAvailable)`: a version AVAILABLE or END."""
        for version, (state, event) in sorted(self._states.get(name, {}).items()):
            if event > since and state in (State.AVAILABLE, State.END):
                return version, state
        return None

    def wait_latest(self, names: list[str], since: int, stop: threading.Event | None = None) -> list[tuple[str, int]]:
        """`WaitUntilServablesReachState(Latest(name)..., kAvailable)`: block until every model has a
        version AVAILABLE or END (events after `since`); the versions that reached END. Returns []
        early when `stop` is set."""
        with self._cond:
            while True:
                reached = {name: self._reached(name, since) for name in names}
                if all(r is not None for r in reached.values()) or (stop is not None and stop.is_set()):
                    break
                self._cond.wait(0.1 if stop is not None else None)
        return [(name, r[0]) for name, r in reached.items() if r is not None and r[1] == State.END]


Listener = Callable[[str, int, State], None]


class Manager:
    """`AspiredVersionsManager` + `BasicManager` for the stand-in's instant loads."""

    def __init__(self, monitor: Monitor, serving: ServingMap, listener: Listener) -> None:
        self.monitor = monitor
        self.serving = serving
        self._listener = listener
        self._lock = threading.Lock()  # the harnesses
        self._harnesses: dict[str, dict[int, Harness]] = {}
        self._pending_lock = threading.Lock()
        self._pending: dict[str, dict[int, str]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- the source's side ---

    def set_aspired_versions(self, name: str, versions: dict[int, str]) -> None:
        """`EnqueueAspiredVersionsRequest`: the latest list per model waits for the next round."""
        with self._pending_lock:
            self._pending[name] = dict(versions)

    # --- one round of the manage-state thread ---

    def tick(self) -> bool:
        """`FlushServables`, `HandlePendingAspiredVersionsRequests`, `InvokePolicyAndExecuteAction`;
        True if an action was taken."""
        with self._lock:
            self._flush()
            self._handle_pending()
            action = self._next_action()
            if action is None:
                return False
            kind, name, harness = action
            if kind == "load":
                harness.phase = Phase.LOADING
            else:
                harness.phase = Phase.UNLOADING
        if kind == "load":
            self._load(name, harness)
        else:
            self._unload(name, harness)
        return True

    def _flush(self) -> None:
        for harnesses in self._harnesses.values():
            for version, harness in list(harnesses.items()):
                if harness.phase in (Phase.NEW, Phase.DISABLED) and not harness.aspired:
                    del harnesses[version]

    def _handle_pending(self) -> None:
        with self._pending_lock:
            for name, versions in list(self._pending.items()):
                harnesses = self._harnesses.setdefault(name, {})
                if any(not h.aspired and v in versions for v, h in harnesses.items()):
                    continue  # a re-aspired version is still on its way out: later
                del self._pending[name]
                for version, harness in harnesses.items():
                    if version not in versions:
                        harness.aspired = False
                for version, path in sorted(versions.items()):
                    if version not in harnesses:
                        harnesses[version] = Harness(version, path)
                        self._publish(name, version, State.START)

    def _next_action(self) -> tuple[str, str, Harness] | None:
        loads: list[tuple[str, str, Harness]] = []
        for name in sorted(self._harnesses):
            action = _policy(self._harnesses[name])
            if action is None:
                continue
            if action[0] == "unload":
                return (action[0], name, action[1])
            loads.append((action[0], name, action[1]))
        return loads[0] if loads else None

    def _serving_versions(self) -> dict[str, dict[int, str]]:
        return {
            name: {v: h.path for v, h in harnesses.items() if h.phase == Phase.READY}
            for name, harnesses in self._harnesses.items()
        }

    def _load(self, name: str, harness: Harness) -> None:
        self._publish(name, harness.version, State.LOADING)
        with self._lock:
            harness.phase = Phase.READY
            versions = self._serving_versions()
        self.serving.update(versions)
        self._publish(name, harness.version, State.AVAILABLE)

    def _unload(self, name: str, harness: Harness) -> None:
        self._publish(name, harness.version, State.UNLOADING)
        with self._lock:
            versions = self._serving_versions()
        self.serving.update(versions)
        with self._lock:
            harness.phase = Phase.DISABLED
        self._publish(name, harness.version, State.END)

    def _publish(self, name: str, version: int, state: State) -> None:
        self.monitor.publish(name, version, state)
        self._listener(name, version, state)

    def idle(self) -> bool:
        """Nothing queued and nothing the policy would do."""
        with self._pending_lock:
            if self._pending:
                return False
        with self._lock:
            return all(_policy(h) is None for h in self._harnesses.values())

    # --- the manage-state thread ---

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tfs-traffic-sim-manager", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(MANAGE_STATE_SECONDS)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _policy(harnesses: dict[int, Harness]) -> tuple[str, Harness] | None:
    """`AvailabilityPreservingPolicy::GetNextAction` for one model."""
    has_aspired = any(h.aspired for h in harnesses.values())
    aspired_serving = any(h.aspired and h.phase == Phase.READY for h in harnesses.values())
    unaspired_serving = [h for h in harnesses.values() if not h.aspired and h.phase == Phase.READY]
    if (not has_aspired or aspired_serving or len(unaspired_serving) > 1) and unaspired_serving:
        return "unload", min(unaspired_serving, key=lambda h: h.version)
    new = [h for h in harnesses.values() if h.aspired and h.phase == Phase.NEW]
    if new:
        return "load", max(new, key=lambda h: h.version)
    return None
