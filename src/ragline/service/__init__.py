"""The service: the HTTP API, the gateway, the stage workers, the embedded engine and the protocol between them."""
