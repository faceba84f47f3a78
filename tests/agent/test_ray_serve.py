"""Scale-out on Ray Serve (agent/ray_serve.py): a specialist's deployment answers as the
specialist does (Serve's local testing mode, no cluster), and a whole turn runs through a real
local cluster with every tool and the router deployed."""

from __future__ import annotations

import time

import numpy as np
import pytest
import ray  # the [ray] extra, which `make install` installs: these tests never skip
from pydantic import BaseModel
from ray import serve
from switchboard.agent import ray_serve
from switchboard.core import Image, Registry, Specialist, Text, mask_to_box
from switchboard.core.errors import InvalidInputError, NotFoundError
from switchboard.specialists import BUILTINS, default_registry, register
from switchboard.world.scene import generate_scene


@pytest.fixture(scope="module")
def scene():
    return generate_scene(11)


def _local(name: str, cls):
    """A proxy over ``name``'s deployment run in Serve's local testing mode (in this process)."""
    dep = serve.deployment(ray_serve.SpecialistServer, name=name)
    handle = serve.run(dep.bind(name, {}), name=f"local-{name}", route_prefix=None,
                       _local_testing_mode=True)  # fmt: skip
    return ray_serve.RemoteSpecialist(cls, handle, ray_serve.MediaRefs(), timeout_s=120)


def test_a_deployment_answers_as_the_specialist_does(scene):
    segment = _local("segment", BUILTINS["segment"])
    box = mask_to_box(scene.masks[0])
    remote = segment(Image(pixels=scene.image), {"box": box})
    local = default_registry().get("segment")(Image(pixels=scene.image), {"box": box})
    assert np.array_equal(remote.masks[0], local.masks[0])
    # Checked here, nothing sent: the same errors as a local call.
    with pytest.raises(InvalidInputError, match="takes image"):
        segment(None, {"box": box})
    with pytest.raises(InvalidInputError, match="invalid arguments"):
        segment(Image(pixels=scene.image), {"box": [9, 9, 1, 1]})
    # A tool's own error comes back as its own type.
    with pytest.raises(NotFoundError):
        segment(Image(pixels=scene.image), {"target": "the bus"})


def test_a_deployments_public_methods_and_attributes_are_forwarded(scene):
    detect = _local("detect", BUILTINS["detect"])
    local = default_registry().get("detect").load()
    assert detect.class_names == local.class_names
    boxes, scores, classes = detect.detect_all(scene.image, conf=0.25)
    lb, ls, lc = local.detect_all(scene.image, conf=0.25)
    assert np.allclose(boxes, lb) and np.array_equal(classes, lc)
    with pytest.raises(InvalidInputError, match="no public attribute"):
        detect.attribute_that_is_not_there  # noqa: B018


class Sleepy(Specialist):
    """Takes as long as it is told to."""

    name = "sleepy"
    description = "sleeps for the given seconds"
    tasks = ("sleep",)
    media = ("none",)

    class Args(BaseModel):
        seconds: float = 1.0

    def run(self, media, args, signal=None):
        time.sleep(args.seconds)
        return Text(text="awake")


def test_a_call_past_its_timeout_is_cancelled_and_raises_a_timeout():
    """As a local call's: the graph reports it as a timeout, and the turn goes on."""
    register(Sleepy)
    try:
        dep = serve.deployment(ray_serve.SpecialistServer, name="sleepy")
        handle = serve.run(dep.bind("sleepy", {}), name="local-sleepy", route_prefix=None,
                           _local_testing_mode=True)  # fmt: skip
        proxy = ray_serve.RemoteSpecialist(Sleepy, handle, ray_serve.MediaRefs(), timeout_s=0.5)
        assert proxy(None, {"seconds": 0.01}).text == "awake"
        t0 = time.perf_counter()
        with pytest.raises(TimeoutError, match="sleepy took longer than 0.5 s"):
            proxy(None, {"seconds": 5})
        assert time.perf_counter() - t0 < 2
    finally:
        default_registry().unregister("sleepy")


def test_a_serve_config_sets_each_tools_plan(tmp_path):
    path = tmp_path / "serve.yaml"
    path.write_text(
        "timeout_s: 30\n"
        "default: {num_cpus: 0.5}\n"
        "tools:\n  edit: {replicas: 2, num_gpus: 0.5, resources: {edit_node: 1}}\n"
        "router: {torch_threads: 1}\n"
    )
    plan = ray_serve.ServePlan.load(path)
    assert plan.timeout_s == 30 and plan.for_tool("segment").num_cpus == 0.5
    edit = plan.for_tool("edit")
    assert edit.replicas == 2 and edit.num_gpus == 0.5 and edit.resources == {"edit_node": 1}
    assert plan.router.torch_threads == 1
    (tmp_path / "bad.yaml").write_text("tools: {edit: {replicas: 0}}\n")
    with pytest.raises(ValueError):
        ray_serve.ServePlan.load(tmp_path / "bad.yaml")


@pytest.fixture(scope="module")
def cluster():
    """A real local cluster (2 CPUs, as this machine), shut down after the module."""
    ray_serve.connect(num_cpus=2)
    yield
    serve.shutdown()
    ray.shutdown()


def test_a_whole_turn_runs_through_the_deployments(cluster, tmp_path, scene):
    """segment and detect deployed (one application each; `bench --only ray` deploys every
    tool), and the router: the trained router's hybrid call goes to segment's replica with its
    signal, perceive's object list comes from detect's, and the turn is stored as any other."""
    from switchboard.agent import Agent

    registry = Registry({k: BUILTINS[k] for k in ("segment", "detect")})
    agent = Agent.load(home=tmp_path, registry=registry, backend="ray")
    assert isinstance(agent.registry.get("segment"), ray_serve.RemoteSpecialist)
    assert agent.policy.calls == "hybrid"
    names = [f"{o.color} {o.shape}" for o in scene.objects]
    i = next(k for k, n in enumerate(names) if names.count(n) == 1)
    turn = agent.chat(f"segment the {names[i]}", image=scene.image)
    assert turn.calls and turn.calls[0].tool == "segment" and turn.calls[0].status == "ok"
    assert turn.calls[0].with_signal
    truth = scene.masks[scene.index(scene.objects[i].id)]
    mask = turn.masks[0]
    assert (mask & truth).sum() / (mask | truth).sum() >= 0.8
    stored = agent.history(turn.session)[-1]
    assert stored["status"] == "done" and stored["outcome"] == "ok", stored
    agent.close()


def test_a_batching_deployment_serves_requests_that_arrive_together_as_one_batch(cluster):
    """``max_batch_size`` 4: detect requests that arrive together reach the detector as one
    network batch (Serve's @serve.batch, the tool's ``call_many``); each gets the answer a
    lone call gives, and a bad request in the batch fails alone with its own error. (On the
    real cluster: Serve's local testing mode has no replica context for @serve.batch.)"""
    import threading

    plan = {"max_batch_size": 4, "batch_wait_timeout_s": 0.5}
    dep = serve.deployment(ray_serve.SpecialistServer, name="detect-batched")
    handle = serve.run(dep.bind("detect", plan), name="detect-batched", route_prefix=None)
    proxy = ray_serve.RemoteSpecialist(BUILTINS["detect"], handle, ray_serve.MediaRefs(), 120)
    scenes = [generate_scene(40 + k) for k in range(3)]
    local = default_registry().get("detect")
    alone = [local(Image(pixels=s.image), {}) for s in scenes]
    got: list = [None] * 4
    start = threading.Barrier(4)

    def one(k: int) -> None:
        start.wait()
        try:
            if k == 3:  # a word the detector does not know: this request's own error
                got[k] = proxy(Image(pixels=scenes[0].image), {"query": "the bus"})
            else:
                got[k] = proxy(Image(pixels=scenes[k].image), {})
        except Exception as exc:
            got[k] = exc

    threads = [threading.Thread(target=one, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert isinstance(got[3], NotFoundError)
    for k in range(3):
        assert got[k].labels == alone[k].labels
        assert np.allclose(got[k].xyxy, alone[k].xyxy, atol=0.5)
    sizes = handle.batch_sizes.remote().result()
    assert sum(sizes) == 4 and max(sizes) >= 3, sizes  # (one may miss the window)
