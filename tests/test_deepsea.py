"""DeepSea: exact dynamic programming, and the policy invariance of potential-based shaping."""

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.envs.deepsea import value_iteration
from align_gym.wrappers import PotentialShaping

GAMMA = 0.9


def shaped_reward_table(env_id: str, phi: np.ndarray) -> np.ndarray:
    """R'(s, a) read off the PotentialShaping wrapper itself, one real step per (s, a)."""
    base = gym.make(env_id).unwrapped
    env = PotentialShaping(gym.make(env_id), potential=lambda state: phi[base.state_index(state)],
                           gamma=GAMMA, source="state")
    table = np.zeros((base.n_states, base.action_space.n))
    for row in range(base.size):
        for col in range(base.size):
            for action in range(base.action_space.n):
                env.reset(seed=0, options={"start": (row, col)})
                _, table[row * base.size + col, action], *_ = env.step(action)
    return table


def test_value_iteration_finds_the_treasure():
    base = gym.make("Align/DeepSea-v0").unwrapped
    V, Q = value_iteration(base.transition_table(), base.reward_table(), 1.0, base.terminal_mask())
    assert V[0] == pytest.approx(1.0 - 0.01)  # N right moves at 0.01/N each, then the treasure
    assert Q[0].argmax() == 1


@pytest.mark.parametrize("seed", range(4))
def test_pbrs_keeps_the_optimal_policy_and_shifts_q_by_the_potential(seed):
    base = gym.make("Align/DeepSea-v0").unwrapped
    P, R, terminal = base.transition_table(), base.reward_table(), base.terminal_mask()
    phi = np.random.default_rng(seed).normal(0, 5.0, size=base.n_states)  # large: shaping dominates R
    phi[terminal] = 0.0
    R_shaped = shaped_reward_table("Align/DeepSea-v0", phi)
    assert not np.allclose(R_shaped[~terminal], R[~terminal])  # the shaping really changes rewards

    _, Q = value_iteration(P, R, GAMMA, terminal)
    _, Q_shaped = value_iteration(P, R_shaped, GAMMA, terminal)
    live = ~terminal
    np.testing.assert_allclose(Q_shaped[live], Q[live] - phi[live, None], atol=1e-8)
    assert np.array_equal(Q_shaped[live].argmax(1), Q[live].argmax(1))


def test_a_shaping_that_is_not_potential_based_changes_the_policy():
    """The control: the same table with Phi(terminal) left in changes the optimal policy."""
    base = gym.make("Align/DeepSea-v0").unwrapped
    P, R, terminal = base.transition_table(), base.reward_table(), base.terminal_mask()
    bonus = np.zeros_like(R)
    bonus[:, 0] = 0.5  # pay for every left move: not of the form gamma*Phi(s') - Phi(s)
    _, Q = value_iteration(P, R, GAMMA, terminal)
    _, Q_bonus = value_iteration(P, R + bonus, GAMMA, terminal)
    assert not np.array_equal(Q_bonus[~terminal].argmax(1), Q[~terminal].argmax(1))
