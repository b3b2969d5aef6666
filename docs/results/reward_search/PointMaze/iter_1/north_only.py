def potential(state):
    return state["y"]

