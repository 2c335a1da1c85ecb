"""The agent's cluster side: node registration, the task worker and its runtimes.

`worker.TaskWorker` turns the assignments the leader writes for this node into containers
(through a `runtime.TaskRuntime`) and reports each task's observed state back; `plan.plan_node`
is its pure core. `hollow` runs many such agents over `fake_runtime.FakeRuntime` in one process.
"""
