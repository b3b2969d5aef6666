def potential(state):
    return 0.5

