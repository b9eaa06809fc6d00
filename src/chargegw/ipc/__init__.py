"""chargegw.ipc: the gateway <-> worker pool link, shared by both sides.

The front end (chargegw.gateway) and the workers (chargegw.workers) both import this
package and never each other:
- `protocol`: the envelope messages and their one-frame batch encoding;
- `zmqloop`: a ZeroMQ socket driven by an asyncio loop without per-message futures;
- `security`: CURVE keys, ipc:// permissions, frame limits, the out-command allowlist.
"""
