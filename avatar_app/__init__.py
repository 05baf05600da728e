"""avatar_app: animate a portrait with your own face, live, on a CPU.

A frame travels one way: source -> tracker -> retarget -> renderer -> sinks.
"""

__version__ = "0.1.0"
