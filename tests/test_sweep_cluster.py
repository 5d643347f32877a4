"""Sweeps on a multi-node Ray cluster, faked on this machine by Ray's own test utility."""

import pytest
from test_sweep import _same_as_a_plain_run, write

from layerscope.store import RunStore
from layerscope.sweep import load_sweep, run_sweep

# with the other Ray tests on one pytest-xdist worker, after test_sweep's local Ray is shut down
pytestmark = pytest.mark.xdist_group("ray")


def test_a_node_removed_mid_trial_finishes_on_another_node(tmp_path):
    """Ray's own multi-node test cluster: the trial's node is removed; Ray retries it on a new node, which
    resumes it."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the head runs no trials
    try:
        first = cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        path = write(tmp_path, name="node", epochs=6)
        path.write_text(path.read_text().replace('seed = [0, 1]\n"train.optimizer" = ["sgd", "adam"]', "seed = [0]"))
        _, trials = load_sweep(path)
        victim = tmp_path / "out" / "node" / trials[0].name
        removed = []

        def on_progress(states):
            if not removed and len(RunStore(victim).completed_steps()) >= 2:
                removed.append(len(RunStore(victim).completed_steps()))
                cluster.remove_node(first)  # the trial's task is retried once a node with a free CPU joins:
                cluster.add_node(num_cpus=1)

        folder, states = run_sweep(path, tmp_path / "out", on_progress=on_progress, poll=0.05)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert removed and [s.status for s in states] == ["finished"] and states[0].retries == 1
    _same_as_a_plain_run(victim, trials[0].config, tmp_path)
