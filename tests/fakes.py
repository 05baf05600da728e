"""Stand-ins shared by the runner tests."""


class ListSink:
    """A sink that keeps every image; with ``fail_after`` it fails from that frame on, as a virtual camera
    taken by another program does."""

    def __init__(self, name="list", fail_after=None):
        self.name, self.fail_after = name, fail_after
        self.images, self.closed = [], False

    def process(self, frame):
        self.write(frame.output)

    def write(self, image):
        if self.fail_after is not None and len(self.images) >= self.fail_after:
            raise OSError("device is used by another program")
        self.images.append(image)

    def close(self):
        self.closed = True
