def potential(state):
    # Staged progress: reach the key, then the door, then the goal; each stage worth more.
    def distance(x, y):
        return abs(state["agent_x"] - x) + abs(state["agent_y"] - y)

    if not state["has_key"]:
        return -0.02 * distance(state["key_x"], state["key_y"])
    if not state["door_open"]:
        return 0.3 - 0.02 * distance(state["door_x"], state["door_y"])
    return 0.6 - 0.02 * distance(state["goal_x"], state["goal_y"])

