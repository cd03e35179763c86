"""Connections: where a station's devices send uplinks and take downlinks (AWS IoT Core).

The shape follows the reference LPWAN connector's ``/connections`` resource so its users can
move over; see docs/connections.md.
"""
