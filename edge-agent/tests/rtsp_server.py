"""An RTSP camera for tests/stream.rs: `rtsp_server.py /PATH=FILE ...` serves each video file at
rtsp://127.0.0.1:PORT/PATH as MJPEG over RTP, as many IP cameras send it, through GStreamer's RTSP
server. Prints the port once it listens; each client gets the file from its start, in real time,
and the stream ends with the file."""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service("0")
for mount in sys.argv[1:]:
    path, video = mount.split("=", 1)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{video}" ! avidemux ! rtpjpegpay name=pay0 pt=26 )')
    server.get_mount_points().add_factory(path, factory)
server.attach(None)
print(server.get_bound_port(), flush=True)
GLib.MainLoop().run()
