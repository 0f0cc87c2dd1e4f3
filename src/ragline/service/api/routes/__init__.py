"""The API's routes, one module per resource, composed with APIRouter in app.py."""
