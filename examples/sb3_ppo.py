"""Use 3: Stable-Baselines3 PPO with the helper: one gamma for agent and shaping, true return logged.

    python examples/sb3_ppo.py
"""

from stable_baselines3 import PPO

from align_gym.agents import RewardTermsCallback, evaluate, make_vec_env

GAMMA = 0.99
venv = make_vec_env("Align/KeyDoor-5x5-v0", n_envs=8, shaping="pbrs(potential=reference)", gamma=GAMMA, seed=0)
model = PPO("MlpPolicy", venv, gamma=GAMMA, n_steps=128, batch_size=256, n_epochs=10, ent_coef=0.003,
            learning_rate=7e-4, seed=0, device="cpu", verbose=1)
model.learn(60_000, callback=RewardTermsCallback())  # align/true_return, align/term_pbrs, ... in the log
print(evaluate(model, "Align/KeyDoor-5x5-v0", n_episodes=20))  # scored on the unshaped task
