def potential(state):
    # Reads a key the state does not have.
    return -abs(state["agent_pos"][0] - state["key_pos"][0])

