def potential(state):
    # The same stages as named components, each logged as its own term.
    key = 0.3 * float(state["has_key"])
    door = 0.3 * float(state["door_open"])
    size = max(1, state["size"])
    if not state["has_key"]:
        target = (state["key_x"], state["key_y"])
    elif not state["door_open"]:
        target = (state["door_x"], state["door_y"])
    else:
        target = (state["goal_x"], state["goal_y"])
    near = -(abs(state["agent_x"] - target[0]) + abs(state["agent_y"] - target[1])) / (2 * size)
    return {"key": key, "door": door, "near": 0.3 * near}

