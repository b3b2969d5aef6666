"""KeyDoor: an optimal walk solves it, its captions tell the story, the reference potential rises."""

from collections import deque

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.envs.keydoor import DOWN, LEFT, PICKUP, RIGHT, TOGGLE, UP, path_length

MOVES = {UP: (0, -1), DOWN: (0, 1), LEFT: (-1, 0), RIGHT: (1, 0)}


def walk(env, target, door_open):
    """Shortest moves from the agent to ``target`` by breadth-first search on the real grid."""
    base = env.unwrapped
    blocked = {(base.door[0], y) for y in range(base.size)} - ({base.door} if door_open else set())
    start, frontier, parent = base.agent, deque([base.agent]), {base.agent: None}
    while frontier:
        cell = frontier.popleft()
        for action, (dx, dy) in MOVES.items():
            nxt = (cell[0] + dx, cell[1] + dy)
            inside = 0 < nxt[0] < base.size - 1 and 0 < nxt[1] < base.size - 1
            if inside and nxt not in blocked and nxt not in parent:
                parent[nxt] = (cell, action)
                frontier.append(nxt)
    actions, cell = [], target
    while cell != start:
        cell, action = parent[cell]
        actions.append(action)
    return actions[::-1]


@pytest.mark.parametrize("size,seed", [(5, 0), (8, 1), (8, 2), (16, 3)])
def test_optimal_walk_solves_it_and_potential_never_falls(size, seed):
    env = gym.make(f"Align/KeyDoor-{size}x{size}-v0")
    _, info = env.reset(seed=seed)
    base, potential = env.unwrapped, env.unwrapped.potentials["reference"]
    phis, captions = [potential(info["state"])], []
    door_side = (base.door[0] - 1, base.door[1])
    plan = walk(env, base.key, False) + [PICKUP]
    for action in plan:
        _, reward, terminated, _, info = env.step(action)
        phis.append(potential(info["state"]))
        captions.append(info["caption"])
    for action in walk(env, door_side, False) + [TOGGLE]:
        _, reward, terminated, _, info = env.step(action)
        phis.append(potential(info["state"]))
        captions.append(info["caption"])
    for action in walk(env, base.goal, True):
        _, reward, terminated, _, info = env.step(action)
        phis.append(potential(info["state"]))
        captions.append(info["caption"])
    steps = info["state"]["steps"]
    assert terminated and info["success"]
    assert reward == pytest.approx(1 - 0.9 * steps / base.max_steps)
    assert "You pick up the key." in captions and "You unlock the door with the key." in captions
    assert captions[-1] == "You reach the goal."
    assert all(b >= a - 1e-12 for a, b in zip(phis, phis[1:])), phis


def test_locked_door_blocks_and_walls_bump():
    env = gym.make("Align/KeyDoor-5x5-v0")
    env.reset(seed=0)
    base = env.unwrapped
    base.agent = (base.door[0] - 1, base.door[1])
    _, _, _, _, info = env.step(RIGHT)
    assert info["caption"] == "The door is locked." and base.agent == (base.door[0] - 1, base.door[1])
    _, _, _, _, info = env.step(TOGGLE)
    assert info["caption"] == "The door is locked and you have no key."


def test_path_length_goes_through_the_door():
    state = {"door_x": 3, "door_y": 1}
    assert path_length(state, 1, 5, 5, 5) == (2 + 4) + (2 + 4)
    assert path_length(state, 1, 5, 2, 1) == 5


def test_render_is_an_image():
    env = gym.make("Align/KeyDoor-8x8-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (96, 96, 3)


def test_action_masks_allow_pickup_on_the_key_and_toggle_beside_the_door():
    env = gym.make("Align/KeyDoor-5x5-v0")
    env.reset(seed=0)
    base = env.unwrapped
    base.agent = base.key
    assert base.action_masks()[:5].all()  # four moves and pickup
    env.step(PICKUP)
    assert not base.action_masks()[PICKUP]
    base.agent = (base.door[0] - 1, base.door[1])
    assert base.action_masks()[TOGGLE]
    env.step(TOGGLE)
    assert not base.action_masks()[TOGGLE]
