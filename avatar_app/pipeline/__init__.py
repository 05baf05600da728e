"""The live pipeline: source -> tracker -> retarget -> renderer -> framing -> sinks, the frame message that travels
through it, the stage loop every job shares, the runner that owns the threads, and the avatar being animated.

Nothing here imports Qt, the training room or the measuring tools (pyproject.toml's import contracts).
"""
