"""Scale-out on Ray Serve: every registered specialist a deployment, the router one more.

    agent = Agent.load(backend="ray")                  # starts a local cluster, or joins one
    switchboard serve --ray [--ray-address auto] [--serve-config serve.yaml]

The agent's graph does not change. Its registry (:class:`RemoteRegistry`) hands out
:class:`RemoteSpecialist` proxies with the specialist's own call signature — arguments and
media are checked here, before anything is sent, and the call is made through a Serve
:class:`~ray.serve.handle.DeploymentHandle` with a timeout that cancels it — and its policy is a
:class:`RemotePolicy` over the router's deployment. An image or a clip goes into Ray's object
store once per turn (:class:`MediaRefs`); each call passes the reference.

Each deployment (:class:`SpecialistServer`, one generic class bound to a tool's name) builds the
registry in its own replica (built-ins and installed plugins, as the agent does) and loads its
tool there. A tool's *peers* (edit asks track, track asks detect and segment) are resolved
inside the replica, in process: they share internals by reference (the tracker drives SAM's
predictor frame by frame), which a remote hop per frame would make slower than doing the work
locally. Replicas, CPUs and GPUs (fractions allowed), custom resources (to place a tool on a
node) and the requests a replica admits come from :class:`ServePlan` (a ``serve.yaml``).

Only this module imports Ray (``pip install switchboard[ray]``); without ``backend="ray"``
nothing here is imported and the embedded agent stays one process.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import ray
import yaml
from pydantic import BaseModel, Field
from ray import serve
from switchboard.core import Registry, Specialist
from switchboard.core.errors import InvalidInputError, SwitchboardError

APP_PREFIX = "switchboard-"  # each tool is its own Serve application: switchboard-segment, …
ROUTER = "router"  # the router's application: switchboard-router


class ToolPlan(BaseModel):
    """How one deployment runs: Serve's options for it."""

    replicas: int = Field(1, ge=1)
    # What a replica reserves (Ray schedules by it; fractions allowed). Ray's default of one CPU
    # per replica would leave five deployments pending on a 2-core machine.
    num_cpus: float = Field(0.25, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)  # custom: {"edit_node": 1}
    # Requests a replica admits at once: more than one, so the next request's arguments are
    # deserialised while one runs (one halves throughput); the tool itself runs one at a time.
    max_ongoing_requests: int = Field(4, ge=1)
    # Requests served as one batch (Serve's @serve.batch): up to ``max_batch_size`` that
    # arrive within ``batch_wait_timeout_s`` go to the tool's ``call_many`` together (the
    # detector runs them as one network batch). 1: each request on its own.
    max_batch_size: int = Field(1, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0)
    # per replica; None: the node's cores (set it when several replicas share a node)
    torch_threads: int | None = Field(None, ge=1)
    device: str = "cpu"


class ServePlan(BaseModel):
    """Every deployment's :class:`ToolPlan` (``tools``: by tool name, ``router``; ``default``
    for a tool not named) and the per-call timeout."""

    default: ToolPlan = Field(default_factory=ToolPlan)
    tools: dict[str, ToolPlan] = Field(default_factory=dict)
    router: ToolPlan = Field(default_factory=ToolPlan)
    timeout_s: float = Field(120.0, gt=0)

    @classmethod
    def load(cls, path: str | Path | None) -> ServePlan:
        """The plan in ``path`` (YAML), or the defaults."""
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidInputError(f"serve config {path}: {exc}") from exc
        return cls.model_validate(data)

    def for_tool(self, name: str) -> ToolPlan:
        return self.tools.get(name, self.default)


def _limit_threads(plan: ToolPlan) -> None:
    """torch's threads in a replica: the plan's, else the node's cores (what a process of its
    own uses). Ray sets OMP_NUM_THREADS to an actor's whole CPUs, 1 for a fraction: left so, a
    replica of a quarter CPU would decode on one thread of an otherwise idle machine."""
    import torch

    torch.set_num_threads(plan.torch_threads or len(os.sched_getaffinity(0)))


def _where() -> dict[str, Any]:
    """The node and process a replica runs in."""
    return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


def _resolve(media: Any) -> Any:
    """A call's media as sent: ``[ObjectRef]`` (the object store) or the media itself."""
    if isinstance(media, list) and len(media) == 1 and isinstance(media[0], ray.ObjectRef):
        return ray.get(media[0])
    return media


class SpecialistServer:
    """The deployment of one registered tool (bound to its name): the tool loaded once per
    replica. ``max_ongoing_requests`` admits several requests (their arguments deserialised
    while one runs); the model serves them one at a time under its own lock
    (``Specialist.lock``, the same one as in a single process)."""

    def __init__(self, name: str, plan: dict[str, Any]) -> None:
        from switchboard.specialists import default_registry

        self.plan = ToolPlan.model_validate(plan)
        _limit_threads(self.plan)
        self.specialist = default_registry().get(name).load(self.plan.device)
        self.batches: list[int] = []  # the sizes of the batches served (batching on)
        self._batched.set_max_batch_size(self.plan.max_batch_size)
        self._batched.set_batch_wait_timeout_s(self.plan.batch_wait_timeout_s)

    async def call(self, media: Any, args: Any, signal: Any = None) -> Any:
        media = _resolve(media)
        if self.plan.max_batch_size == 1:
            return await asyncio.to_thread(self.specialist, media, args, signal)
        out = await self._batched(media, args, signal)
        if isinstance(out, BaseException):  # this request's own error
            raise out
        return out

    @serve.batch(max_batch_size=2, batch_wait_timeout_s=0.01)  # (the plan's values at start)
    async def _batched(self, media: list, args: list, signal: list) -> list:
        self.batches.append(len(media))
        calls = list(zip(media, args, signal, strict=True))
        return await asyncio.to_thread(self.specialist.call_many, calls)

    async def batch_sizes(self) -> list[int]:
        """The sizes of the batches this replica served (empty without batching)."""
        return list(self.batches)

    async def where(self) -> dict[str, Any]:
        """The node and process this replica runs in (``node``: Ray's node id, ``pid``)."""
        return _where()

    async def method(self, name: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        """One of the tool's public methods (``detect_all``): what its peers and the agent's
        perceive step use besides the call."""
        if name.startswith("_") or not callable(getattr(type(self.specialist), name, None)):
            raise InvalidInputError(f"{self.specialist.name!r} has no public method {name!r}")
        fn = getattr(self.specialist, name)
        return await asyncio.to_thread(self._under_lock, fn, *args, **kwargs)

    def _under_lock(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # a method drives the same model as a call (a plugin may lack the lock until then)
        with self.specialist.model_lock():
            return fn(*args, **kwargs)

    async def attribute(self, name: str) -> Any:
        """One of the tool's public attributes (``class_names``)."""
        if name.startswith("_") or not hasattr(self.specialist, name):
            raise InvalidInputError(f"{self.specialist.name!r} has no public attribute {name!r}")
        return getattr(self.specialist, name)


class RouterServer:
    """The router's deployment: :class:`~switchboard.agent.policy.RouterPolicy` loaded once per
    replica; ``step`` is the policy's."""

    def __init__(self, signals: bool, plan: dict[str, Any]) -> None:
        from .policy import RouterPolicy

        self.plan = ToolPlan.model_validate(plan)
        _limit_threads(self.plan)
        self.policy = RouterPolicy(with_signals=signals)
        _ = self.policy.router  # load now: the first turn should not wait for it

    async def calls(self) -> str:
        """How the loaded router calls tools: "hybrid" or "text"."""
        return self.policy.calls

    async def step(self, messages: Any, images: Any, frame_index: Any, regions: Any,
                   objects: Any = None) -> Any:  # fmt: skip
        images = [_resolve(m) for m in images]
        # No lock here: the router queues its own routes and decodes those that wait as one
        # batch (Router.route), which a lock around it would prevent.
        return await asyncio.to_thread(self.policy.step, messages, images, frame_index,
                                       regions, objects)  # fmt: skip


class MediaRefs:
    """Media put into the object store once: the reference of each image or clip still alive
    (keyed by the array's identity, held weakly), so the calls of a turn send a reference, not
    the pixels again."""

    def __init__(self, limit: int = 32) -> None:
        self.limit = limit
        self._refs: dict[tuple[int, type], tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(media: Any) -> Any:
        """The array that identifies ``media`` (an Image's pixels, a Video's frames). The agent
        never changes a turn's media in place: an edit makes new arrays."""
        return getattr(media, "pixels", getattr(media, "frames", media))

    def wrap(self, media: Any) -> Any:
        """``[ObjectRef]`` for ``media`` (an Image, a Video or an array); None stays None."""
        if media is None or not ray.is_initialized():
            return media
        key = self._key(media)
        slot = (id(key), type(media))  # an image goes to the router bare, to a tool wrapped
        with self._lock:
            hit = self._refs.get(slot)
            if hit is not None and hit[0]() is key:
                return [hit[1]]
            ref = ray.put(media)
            try:
                self._refs[slot] = (weakref.ref(key), ref)
            except TypeError:  # not weakly referable: sent by reference, not kept
                return [ref]
            if len(self._refs) > self.limit:
                dead = [k for k, (w, _) in self._refs.items() if w() is None]
                for k in dead or list(self._refs)[: len(self._refs) - self.limit]:
                    self._refs.pop(k, None)
            return [ref]


def _result(response: Any, timeout_s: float, what: str) -> Any:
    """A deployment's answer within ``timeout_s`` (else the call is cancelled and
    :class:`TimeoutError` raised, as a local call's timeout is); a tool's own error comes back
    as its own type (a :class:`NotFoundError` stays one)."""
    try:
        return response.result(timeout_s=timeout_s)
    except TimeoutError:
        response.cancel()
        raise TimeoutError(f"{what} took longer than {timeout_s:g} s") from None
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        if isinstance(cause, SwitchboardError):
            raise cause from None
        raise


class RemoteSpecialist:
    """A tool's deployment with the tool's call signature: ``proxy(media, args, signal)``.
    Media and arguments are checked here (the same errors as a local call, nothing sent);
    public methods and attributes of the tool (``detect_all``, ``class_names``) are forwarded."""

    def __init__(self, cls: type[Specialist], handle: Any, refs: MediaRefs, timeout_s: float):
        self.cls, self.handle, self.refs, self.timeout_s = cls, handle, refs, timeout_s
        self.name, self.media, self.Args, self.signal = cls.name, cls.media, cls.Args, cls.signal
        self.registry: Any = None
        self._attrs: dict[str, Any] = {}

    loaded = True  # the replica loaded it

    def load(self, device: str = "cpu", dtype: Any = None) -> RemoteSpecialist:
        return self

    def unload(self) -> None:
        """The replica keeps its weights (its own process, its own memory)."""

    def __call__(self, media: Any, args: dict[str, Any] | BaseModel, signal: Any = None) -> Any:
        parsed = self.cls.check_call(media, args, signal is not None)  # as a local call
        response = self.handle.call.remote(self.refs.wrap(media), parsed, signal)
        return _result(response, self.timeout_s, self.name)

    def where(self) -> dict[str, Any]:
        """The node and process of the replica that answers (``node``, ``pid``)."""
        return _result(self.handle.where.remote(), self.timeout_s, f"{self.name}.where")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        kind = getattr(self.cls, name, None)
        if callable(kind) and not isinstance(kind, property):

            def forward(*args: Any, **kwargs: Any) -> Any:
                response = self.handle.method.remote(name, args, kwargs)
                return _result(response, self.timeout_s, f"{self.name}.{name}")

            return forward
        if name not in self._attrs:  # a property of the loaded tool: read once
            response = self.handle.attribute.remote(name)
            self._attrs[name] = _result(response, self.timeout_s, f"{self.name}.{name}")
        return self._attrs[name]


class RemoteRegistry(Registry):
    """The agent's registry over deployments: the same classes (schemas, media, examples),
    proxies for the deployed tools; a tool registered later in the agent (its own, such as
    undo) stays local."""

    def __init__(self, local: Registry, handles: dict[str, Any], refs: MediaRefs,
                 timeout_s: float) -> None:  # fmt: skip
        super().__init__()
        for name in local.names():
            self.register(local.cls(name), name=name)
        self.handles, self.refs, self.timeout_s = handles, refs, timeout_s

    def get(self, name: str) -> Any:
        if name in self.handles:
            if name not in self._instances:
                proxy = RemoteSpecialist(self.cls(name), self.handles[name], self.refs,
                                         self.timeout_s)  # fmt: skip
                proxy.registry = self
                self._instances[name] = proxy  # type: ignore[assignment]
            return self._instances[name]
        return super().get(name)

    def loaded(self) -> list[str]:
        """Only the agent's own: a memory budget unloads nothing in the replicas."""
        return [n for n in super().loaded() if n not in self.handles]


class RemotePolicy:
    """The router's deployment with the policy's ``step``."""

    def __init__(self, handle: Any, refs: MediaRefs, timeout_s: float) -> None:
        self.handle, self.refs, self.timeout_s = handle, refs, timeout_s
        self._calls: str | None = None

    @property
    def calls(self) -> str:
        """How the deployed router calls tools ("hybrid" or "text")."""
        if self._calls is None:
            self._calls = _result(self.handle.calls.remote(), self.timeout_s, "the router")
        return self._calls

    def step(self, messages: Any, images: Any, frame_index: Any, regions: Any,
             objects: Any = None) -> Any:  # fmt: skip
        images = [self.refs.wrap(m) for m in images]
        response = self.handle.step.remote(messages, images, frame_index, regions, objects)
        return _result(response, self.timeout_s, "the router")


def connect(address: str | None = None, **init: Any) -> None:
    """Join the cluster at ``address`` ("auto": the one this machine belongs to), or start a
    local one (``init``: more of ``ray.init``'s options, e.g. ``num_cpus``); Serve without its
    HTTP proxy (the agent's server is the front door)."""
    if not ray.is_initialized():
        # Ray puts the driver's current folder on every worker's sys.path. Run from a source
        # checkout, its top-level folders (kernels/, core/) would shadow installed packages of
        # the same names in the replicas (transformers imports `kernels`): start from a neutral
        # folder (the package itself is installed, so replicas import it from site-packages).
        here = os.getcwd()
        os.chdir(tempfile.gettempdir())
        try:
            ray.init(address=address, namespace="switchboard", include_dashboard=False,
                     log_to_driver=False, ignore_reinit_error=True, **init)  # fmt: skip
        finally:
            os.chdir(here)
    serve.start(proxy_location="Disabled")


def deploy(registry: Registry, plan: ServePlan, signals: bool = True,
           names: list[str] | None = None, router: bool = True,
           redeploy: bool = False) -> dict[str, Any]:  # fmt: skip
    """Deploy one application per tool of ``registry`` (``names``: those only) and, with
    ``router``, the router's; returns their handles by tool name, the router's as
    ``"router"``. The agent's own tools (undo/redo: the session's versions, not pixels) stay
    in the agent.

    An application already running in the cluster (another agent process deployed it: the
    replicas of a scaled-out server share the deployments) is joined, not deployed again:
    deploying it again would restart its replicas under the other process's calls.
    ``redeploy``: deploy every one anew (a changed plan)."""
    from .tools import AGENT_TOOLS

    names = [n for n in (names if names is not None else registry.names()) if n not in AGENT_TOOLS]
    wanted = {n: (SpecialistServer, plan.for_tool(n), (n, plan.for_tool(n).model_dump()))
              for n in names}  # fmt: skip
    if router:
        wanted[ROUTER] = (RouterServer, plan.router, (signals, plan.router.model_dump()))
    running = set() if redeploy else _running()
    handles = {n: serve.get_app_handle(APP_PREFIX + n) for n in wanted if APP_PREFIX + n in running}
    # The rest all at once: the replicas start (import torch, load weights) side by side.
    todo = [n for n in wanted if n not in handles]
    targets = [serve.RunTarget(_app(wanted[n][0], n, wanted[n][1], *wanted[n][2]),
                               name=APP_PREFIX + n, route_prefix=None) for n in todo]  # fmt: skip
    if targets:
        handles.update(zip(todo, serve.run_many(targets), strict=True))
    return handles


def _running() -> set[str]:
    """The Serve applications of the cluster that are up."""
    apps = serve.status().applications
    return {name for name, app in apps.items() if str(app.status).endswith("RUNNING")}


def _app(server: type, name: str, tp: ToolPlan, *args: Any) -> Any:
    """``server`` as the deployment ``name`` with ``tp``'s options, built with ``args``."""
    dep = serve.deployment(server, name=name).options(
        num_replicas=tp.replicas,
        max_ongoing_requests=tp.max_ongoing_requests,
        ray_actor_options=_actor_options(tp),
    )
    return dep.bind(*args)


def _actor_options(tp: ToolPlan) -> dict[str, Any]:
    opts: dict[str, Any] = {"num_cpus": tp.num_cpus, "num_gpus": tp.num_gpus}
    if tp.resources:
        opts["resources"] = dict(tp.resources)
    return opts


def backend(registry: Registry, address: str | None = None, plan: ServePlan | None = None,
            signals: bool = True, router: bool = True,
            ) -> tuple[RemoteRegistry, RemotePolicy | None]:  # fmt: skip
    """Connect, deploy (or join) every tool of ``registry`` and, with ``router``, the router,
    and return the registry and policy (None without ``router``) an
    :class:`~switchboard.agent.Agent` runs on."""
    plan = plan or ServePlan()
    connect(address)
    handles = deploy(registry, plan, signals, router=router)
    refs = MediaRefs()
    policy = RemotePolicy(handles.pop(ROUTER), refs, plan.timeout_s) if router else None
    return RemoteRegistry(registry, handles, refs, plan.timeout_s), policy


def shutdown() -> None:
    """Remove the deployments (the cluster stays up)."""
    serve.shutdown()
