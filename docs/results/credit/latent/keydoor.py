def latent_factors(state, next_state):
    # Hand-written factors for KeyDoorSubgoals (what a capable model could write from the task and
    # the state's fields): one marker per subgoal event. The decoder learns what each is worth.
    got_key = float(next_state["has_key"]) - float(state["has_key"])
    opened = float(next_state["door_open"]) - float(state["door_open"])
    at_goal = float(next_state["agent_x"] == next_state["goal_x"] and next_state["agent_y"] == next_state["goal_y"])
    return [got_key, opened, at_goal]
