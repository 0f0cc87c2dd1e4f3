"""The HTTP service: FastAPI app, auth, rate limits, the chat page."""
