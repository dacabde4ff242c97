"""A Kite-compatible simulator on loopback: the ticker WebSocket and the REST endpoints the project
uses, in Kite's wire formats, with fault injection for tests. One ASGI app served by uvicorn."""
