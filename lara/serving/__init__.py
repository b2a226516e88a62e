"""openpi's websocket policy protocol, the side every folder shares: its wire format (`wire`) and a light client
(`client`: `PolicyClient`, and `RemotePolicy`, a `lara.policy.Policy` served elsewhere), and openpi's LIBERO
observation (`openpi`: what its LIBERO client sends, for scoring any openpi-protocol server). The server is
`lara.real_robot.server` (`lara serve`); evaluation (`lara eval --policy ws://HOST:PORT`) and the ROS node are clients.

Both files need numpy, msgpack and websockets only and keep Python 3.8 syntax: a robot PC that cannot install `lara`
copies `client.py` and `wire.py` into one folder and runs `import client`.
"""
