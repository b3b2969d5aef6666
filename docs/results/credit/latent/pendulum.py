def latent_factors(state, next_state):
    # Hand-written factors for the Pendulum swing-up (what a capable model could write from the task
    # and the state's fields): how far from upright, how fast, how much torque. The decoder learns
    # how they combine into the step's reward.
    theta = state["theta"]
    return [theta * theta, state["theta_dot"] * state["theta_dot"], next_state["torque"] * next_state["torque"],
            next_state["upright"]]
