"""Scaled out over two machines (two Ray nodes on this one, ``ray.cluster_utils.Cluster``) and
two agent processes sharing a PostgreSQL store and checkpointer: segment and edit are placed
on different nodes by custom resources, a turn uses both, and when the agent process running
the turn is killed halfway, the other one — already serving, joined to the same deployments —
resumes the turn from its checkpoint and finishes it. Runs in a pytest process of its own
(``make test``): Ray's driver state stays out of the rest of the suite."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from ray import serve
from ray.cluster_utils import Cluster
from switchboard.agent import ray_serve
from switchboard.core.media import decode_image

# The scripted policy both agent processes run (a real router would do; the test is about
# where the work runs and who finishes it): segment the object's box, then recolour it, then
# answer. ``HANG``: the process that gets killed stops before its second route, after
# segment's result was checkpointed.
POLICY = textwrap.dedent("""
    import time
    from switchboard.agent.graph import Step
    from switchboard.core import HybridCall, Registry
    from switchboard.specialists import BUILTINS

    HANG = False

    class SegmentThenRecolour:
        def __init__(self, box):
            self.box = [float(v) for v in box]

        def step(self, messages, *a, **kw):
            last = messages[-1]["content"]
            if last.startswith("[segment"):
                if HANG:
                    print("SEGMENTED", flush=True)
                    time.sleep(600)
                return Step(calls=[HybridCall(tool="edit", args={
                    "op": "recolor", "box": self.box, "color": "blue"})])
            if last.startswith("[edit"):
                return Step(text="It is blue now.")
            return Step(calls=[HybridCall(tool="segment", args={"box": self.box})])

    def registry():
        return Registry({k: BUILTINS[k] for k in ("segment", "edit")})
""")
KILLED = POLICY + textwrap.dedent("""
    import json, sys
    from switchboard.agent import Agent
    from switchboard.world.scene import generate_scene

    HANG = True
    address, database, home, plan, box = sys.argv[1:6]
    agent = Agent.load(home=home, database=database, backend="ray", ray_address=address,
                       serve_config=plan, policy=SegmentThenRecolour(json.loads(box)),
                       registry=registry())
    agent.chat("make the red shape blue", image=generate_scene(21).image)
""")
PLAN = """\
timeout_s: 120
tools:
  segment: {num_cpus: 0.25, resources: {node_a: 0.1}}
  edit: {num_cpus: 0.25, resources: {node_b: 0.1}}
"""


@pytest.fixture(scope="module")
def cluster():
    """Two nodes: the head (resource ``node_a``) and a worker (``node_b``), each with 2 CPUs."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"node_a": 1}})
    c.add_node(num_cpus=2, resources={"node_b": 1})
    c.wait_for_nodes()
    ray_serve.connect(c.address)
    yield c
    serve.shutdown()
    import ray

    ray.shutdown()
    c.shutdown()


def test_a_turn_spans_two_nodes_and_another_agent_process_finishes_it_when_the_first_dies(
    cluster, tmp_path, postgres_url, monkeypatch
):
    import json

    import ray
    from switchboard.agent import Agent
    from switchboard.core import mask_to_box
    from switchboard.core.config import get_settings
    from switchboard.world.scene import generate_scene

    scene = generate_scene(21)
    i = next(k for k, o in enumerate(scene.objects) if o.color == "red")
    truth = scene.masks[scene.index(scene.objects[i].id)]
    box = [int(v) for v in mask_to_box(truth)]
    plan = tmp_path / "serve.yaml"
    plan.write_text(PLAN)
    space: dict = {}
    exec(POLICY, space)
    # The serving replica: it deploys segment and edit, and looks for orphaned turns every
    # second (a lease of 3 s).
    monkeypatch.setenv("SWITCHBOARD_TURN_LEASE_S", "3")
    get_settings.cache_clear()
    try:
        serving = Agent.load(
            home=tmp_path / "b",
            database=postgres_url,
            backend="ray",
            ray_address=cluster.address,
            serve_config=plan,
            policy=space["SegmentThenRecolour"](box),
            registry=space["registry"](),
            recover="background",
        )
    finally:
        get_settings.cache_clear()
    serving.recovery.join(60)
    # Placed by their resources: segment on the head node, edit on the worker.
    nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    seg, edit = (serving.registry.get(t).where()["node"] for t in ("segment", "edit"))
    assert seg != edit and "node_a" in nodes[seg] and "node_b" in nodes[edit]

    # The other agent process: joins the running deployments, starts the turn, and is killed
    # after segment answered (its result checkpointed), before edit was called.
    shared = tmp_path / "b" / "artifacts"  # the artifacts folder both processes mount
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED,
            cluster.address,
            postgres_url,
            str(tmp_path / "a"),
            str(plan),
            json.dumps(box),
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "SWITCHBOARD_ARTIFACTS": str(shared)},
    )
    try:
        assert proc.stdout.readline().strip() == "SEGMENTED"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert ray_serve._running() >= {"switchboard-segment", "switchboard-edit"}  # not redeployed

    deadline = time.monotonic() + 90
    while serving.recovered != 1:  # the serving process claims the dead one's turn
        assert time.monotonic() < deadline, "the turn was not resumed"
        time.sleep(0.2)
    (session,) = serving.store.sessions()
    (t,) = serving.history(session["id"])
    assert t["status"] == "done" and t["resumed"] and t["outcome"] == "ok", t
    assert [c["tool"] for c in t["calls"]] == ["segment", "edit"]
    assert serving.store.runner_of(t["id"]) == serving.store.runner
    (edited,) = [a for a in t["messages"][1]["artifacts"] if a["kind"] == "edited"]
    image = decode_image(serving.store.artifact(edited["sha256"])[0]).astype(int)
    r, g, b = (image[truth][:, k].mean() for k in range(3))
    assert b > r + 60 and b > g + 60, (r, g, b)  # the red shape is blue now
    outside = ~truth
    assert np.abs(image[outside] - scene.image[outside].astype(int)).mean() < 2
    serving.close()
