import math


def potential(state):
    # Round the wall through the gap east of it: south of the wall, head for the gap first.
    gap_x, gap_y = 0.8, 0.5
    x, y = state["x"], state["y"]
    to_goal = math.hypot(state["goal_x"] - gap_x, state["goal_y"] - gap_y)
    if y < 0.45 and x < 0.75:
        return -(math.hypot(gap_x - x, gap_y - y) + to_goal) / 1.6
    return -math.hypot(state["goal_x"] - x, state["goal_y"] - y) / 1.6

