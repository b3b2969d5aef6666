def potential(state):
    # Divides by a speed that is zero at the start: not finite.
    return state["x"] / (state["vx"] * 0.0) if state["vx"] == 0.0 else 0.0

