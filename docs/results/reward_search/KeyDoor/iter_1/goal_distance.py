def potential(state):
    # Closeness to the goal alone: it ignores the key and the locked door between them.
    return -0.05 * (abs(state["agent_x"] - state["goal_x"]) + abs(state["agent_y"] - state["goal_y"]))

