"""Tool-use tasks: each action is one JSON tool call; the text-task contract holds."""
