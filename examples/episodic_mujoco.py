"""Episodic MuJoCo locomotion: Hopper, HalfCheetah or Walker2d with the reward paid at the end.

The delayed-reward locomotion tasks of the credit-assignment papers (RRD, LaRe): gymnasium's
MuJoCo env with its reward withheld by :class:`align_gym.wrappers.EpisodicReward` and paid as the
episode's sum on its last step. This recipe builds the task, trains Stable-Baselines3's SAC on it
for ``--steps`` steps and scores the policy by the episodic task reward: the sum of
``info["env_reward"]`` over an episode (0 until the last step, then the whole dense return; the
dense return, the sum of ``info["dense_reward"]``, is printed beside it as a check).

These are gymnasium ids, not ``Align/`` ids: they have no captions, symbolic state or potentials,
so potential shaping and caption-based LLM methods do not apply to them; redistribution of the
episodic reward does: ``--shaping rrd`` (the default; RRD's reward model over observations and
actions relabels each minibatch SAC samples) or ``--shaping ircr``; ``--shaping none`` is plain SAC
on the episodic reward, the baseline they are measured against.

    pip install "gymnasium[mujoco]==1.2.0"
    python examples/episodic_mujoco.py --env Hopper-v5 --steps 3000
    python examples/episodic_mujoco.py --env Hopper-v5 --steps 3000 --shaping none
    python examples/episodic_mujoco.py --env Walker2d-v5 --steps 1000000 --eval-episodes 10   # a real run

Without MuJoCo the script prints how to install it and exits with status 0 (a skip, not a failure).
"""

from __future__ import annotations

import argparse
import sys

import gymnasium as gym
import numpy as np

from align_gym.wrappers import EpisodicReward

ENV_IDS = ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5")
INSTALL = 'pip install "gymnasium[mujoco]==1.2.0"'


def make_episodic(env_id: str, max_episode_steps: int) -> EpisodicReward:
    """``env_id`` cut at ``max_episode_steps``, its reward withheld until the episode's last step.

    The time limit sits inside the wrapper, so a truncated episode pays its sum too.
    """
    return EpisodicReward(gym.make(env_id, max_episode_steps=max_episode_steps))


def evaluate(model, env_id: str, max_episode_steps: int, episodes: int, seed: int) -> list[tuple[float, float]]:
    """(episodic return, dense return) of each of ``episodes`` deterministic episodes, on seeds
    ``seed, seed + 1, ...``. The episodic return is the sum of ``info["env_reward"]``: the score."""
    env = make_episodic(env_id, max_episode_steps)
    results = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        episodic, dense, done = 0.0, 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(action)
            episodic += info["env_reward"]
            dense += info["dense_reward"]
            done = terminated or truncated
        results.append((episodic, dense))
    env.close()
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=ENV_IDS, default="Hopper-v5", help="the MuJoCo task (default: %(default)s)")
    parser.add_argument("--shaping", default="rrd", help="a credit-assignment spec: rrd, ircr, none, ... (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=3000, help="SAC training steps (default: %(default)s, a smoke run)")
    parser.add_argument("--max-episode-steps", type=int, default=1000,
                        help="time limit per episode, the papers' 1000 (default: %(default)s)")
    parser.add_argument("--learning-starts", type=int, default=100,
                        help="random steps before SAC's first update (default: %(default)s)")
    parser.add_argument("--eval-episodes", type=int, default=3, help="evaluation episodes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="training seed; evaluation uses seed + 1000 on (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device for SAC (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.max_episode_steps < 1 or args.eval_episodes < 1:
        parser.error("--steps, --max-episode-steps and --eval-episodes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import mujoco  # noqa: F401
    except ImportError:
        print(f"skipped: {args.env} needs MuJoCo, which is not installed. Install it with: {INSTALL}", file=sys.stderr)
        return 0
    from stable_baselines3 import SAC

    from align_gym.agents import install_credit, make_vec_env

    gamma = 0.99  # the agent's, and the shaping's
    env = make_vec_env(make_episodic, n_envs=1, shaping=args.shaping, gamma=gamma, seed=args.seed,
                       env_kwargs={"env_id": args.env, "max_episode_steps": args.max_episode_steps})
    model = SAC("MlpPolicy", env, gamma=gamma, learning_starts=min(args.learning_starts, args.steps), seed=args.seed,
                device=args.device, verbose=0)
    model.learn(args.steps, callback=install_credit(model))  # puts the redistribution into SAC's replay buffer
    results = np.array(evaluate(model, args.env, args.max_episode_steps, args.eval_episodes, seed=args.seed + 1000))
    episodic, dense = results[:, 0], results[:, 1]
    print(f"{args.env}, episodic reward, SAC with {args.shaping} after {args.steps} steps: episodic return "
          f"{episodic.mean():.1f} +- {episodic.std():.1f} over {args.eval_episodes} episodes "
          f"(dense return {dense.mean():.1f}, the same sum paid step by step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
