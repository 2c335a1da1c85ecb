from hypothesis import given
from hypothesis import strategies as st

from agent.config import BackoffSettings
from agent.models import RestartPolicy
from agent.restart import decide, next_delay

B = BackoffSettings()


def run(policy: str, code: int, count: int = 0, stopped: bool = False, max_retries: int = 0) -> bool:
    p = RestartPolicy(name=policy, max_retries=max_retries)
    return decide(p, code, stopped, count, 0.5, 0.0, B).restart


def test_policy_table() -> None:
    assert not run("no", 1)
    assert run("always", 0) and run("always", 1)
    assert run("unless-stopped", 0)
    assert not run("always", 0, stopped=True)
    assert not run("unless-stopped", 137, stopped=True)
    assert run("on-failure", 3) and not run("on-failure", 0)


def test_on_failure_stops_after_max_retries() -> None:
    assert [run("on-failure", 3, count=n, max_retries=3) for n in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_backoff_doubles_then_caps_and_resets() -> None:
    delays = [0.0]
    for _ in range(12):
        delays.append(next_delay(delays[-1], 0.1, B))
    assert delays[1:5] == [0.1, 0.2, 0.4, 0.8]
    assert max(delays) == B.cap
    assert next_delay(30.0, B.reset_after, B) == B.initial


@given(prev=st.floats(0, 1000), run_s=st.floats(0, 100))
def test_delay_always_within_bounds(prev: float, run_s: float) -> None:
    assert B.initial <= next_delay(prev, run_s, B) <= B.cap
