"""Each rule about faces, written once: MediaPipe's landmark index sets, geometry (similarity fits, head angles),
the face crop the neural model sees, the landmark image, the mesh laid over a portrait."""
