def potential(state):
    return 1.0

